"""Device credentials for EMQX's HTTP authentication: a random secret per device sn, shown once when it is
created and stored only as an argon2id hash; listed without secrets; revoked.

Verifying a secret costs one argon2id check (about 140 ms of CPU and 64 MiB here), so a verified secret is
remembered as a SHA-256 digest of sn and secret (`Keys.authn_cache`), for `cache_ttl` seconds after the
device last connected (each hit renews it: GETEX): reconnect storms, such as every device coming back after
an EMQX restart, cost one Redis command per connect instead of one argon2id check. The digest of a 256-bit
random secret is as safe against guessing as its argon2id hash, so a long TTL gives nothing away.

A bounded number of checks run at once, with a bounded queue behind them (`throttle.VerifyLimiter`): past
that a request is refused at once (`Busy`) rather than checked after EMQX has stopped waiting for the answer.
Checks are counted before they run, per sn and per peer address (`throttle.Throttle`): past the limits
`Locked` is raised at once, without an argon2id check. A remembered secret is not counted: it costs nothing
and only the right secret finds it.

Creating or revoking a credential drops the mark at once, and the mark is only written while the hash it
was checked against is still the stored one (an atomic script), so a verification racing a revocation
cannot leave a revoked device able to connect.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adapter.auth.throttle import Bucket, Busy, Throttle, VerifyLimiter
from adapter.auth.users import check_name, hash_secret, verify_secret
from adapter.errors import AppError, invalid
from adapter.settings import Settings
from adapter.store import scripts
from adapter.store.keys import Keys
from adapter.store.scripts import Script, ScriptCall
from adapter.store.types import AsyncRedis

__all__ = ["Busy", "Credential", "CredentialStore", "Locked", "VerifyLimiter", "authn_buckets", "cache_digest",
           "check_sn", "new_secret"]

SECRET_BYTES = 32

# the credential hash and the cache mark (both in the sn's slot); the hash verified against, the digest, ttl (s).
# Built by `remember_call` only.
_REMEMBER = Script("""-- KEYS: credential, mark
-- ARGV: stored, digest, ttl
if redis.call('HGET', KEYS[1], 'hash') == ARGV[1] then
  return redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
end
return false
""", "credentials._REMEMBER")


def remember_call(keys: Keys, sn: str, stored: str, digest: str, ttl: int) -> ScriptCall:
    """`_REMEMBER`: remember `digest` for `sn` while its credential's hash is `stored`."""
    return _REMEMBER.call(credential=keys.credential(sn), mark=keys.authn_cache(sn), stored=stored, digest=digest,
                          ttl=ttl)


@dataclass(frozen=True)
class Credential:
    sn: str
    created: int  # s

    def item(self) -> dict[str, Any]:
        return {"sn": self.sn, "createTime": self.created}


def check_sn(sn: str) -> str:
    try:
        return check_name(sn)
    except AppError:
        raise invalid("sn: 1-64 letters, digits or . _ - @") from None


def new_secret() -> str:
    """256 random bits, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def cache_digest(sn: str, secret: str) -> str:
    return hashlib.sha256(f"{sn}\x00{secret}".encode()).hexdigest()


class CredentialStore:
    def __init__(self, redis: AsyncRedis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def create(self, sn: str) -> tuple[Credential, str]:
        """A new credential for `sn` and its secret (the only time the secret exists outside the device)."""
        check_sn(sn)
        secret = new_secret()
        hashed = await hash_secret(secret)
        if not await self.redis.hsetnx(self.keys.credential(sn), "hash", hashed):
            raise AppError("conflict", f"device {sn} already has a credential (revoke it first)")
        now = int(time.time())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.credential(sn), "created", now)
            pipe.zadd(self.keys.credentials(self.keys.shard(sn)), {sn: now})
            pipe.delete(self.keys.authn_cache(sn))
            await pipe.execute()
        return Credential(sn, now), secret

    async def page(self, page: int, limit: int) -> tuple[int, list[Credential]]:
        """(total, one page), newest first. On the cluster the shards' first pages are merged by creation time
        (ties by sn, newest first)."""
        start = (page - 1) * limit
        shards = self.keys.shards()
        if len(shards) == 1:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(self.keys.credentials())
                pipe.zrevrange(self.keys.credentials(), start, start + limit - 1, withscores=True)
                total, members = await pipe.execute()
            return int(total), [Credential(str(sn), int(score)) for sn, score in members]
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in shards:
                pipe.zcard(self.keys.credentials(p))
                pipe.zrevrange(self.keys.credentials(p), 0, start + limit - 1, withscores=True)
            replies = await pipe.execute()
        total = sum(int(n) for n in replies[0::2])
        merged = sorted(((int(score), str(sn)) for part in replies[1::2] for sn, score in part), reverse=True)
        return total, [Credential(sn, score) for score, sn in merged[start:start + limit]]

    async def get(self, sn: str) -> Credential | None:
        score = await self.redis.zscore(self.keys.credentials(self.keys.shard(sn)), sn)
        return None if score is None else Credential(sn, int(score))

    async def revoke(self, sn: str) -> int:
        """Remove the credential (1) or nothing (0). A connected device stays connected until it reconnects.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.credential(sn))
            pipe.zrem(self.keys.credentials(self.keys.shard(sn)), sn)
            pipe.delete(self.keys.authn_cache(sn))
            removed, _, _ = await pipe.execute()
        return int(removed)

    async def verify(self, sn: str, secret: str, *, cache_ttl: int, limiter: VerifyLimiter,
                     buckets: Sequence[Bucket] = ()) -> bool | None:
        """True or False; None when `sn` has no credential. Raises Busy when `limiter` is full, Locked when
        `buckets` (counted before the check) are past their limits."""
        digest = cache_digest(sn, secret)
        cached = await self.redis.getex(self.keys.authn_cache(sn), ex=cache_ttl)
        if cached is not None and hmac.compare_digest(str(cached), digest):
            return True  # the mark exists only while the credential it was checked against does
        stored = await self.redis.hget(self.keys.credential(sn), "hash")
        if stored is None:
            return None
        if not secret:
            return False
        throttle = Throttle(self.redis)
        if buckets and await throttle.take(buckets):
            raise Locked
        try:
            async with limiter.slot():
                good = await verify_secret(str(stored), secret)
        except Busy:
            if buckets:
                await throttle.refund(buckets)
            raise
        if good:
            await scripts.call(self.redis, remember_call(self.keys, sn, str(stored), digest, cache_ttl))
            if buckets:
                await throttle.clear(buckets)
        return good


class Locked(Exception):
    """Too many failed checks for this sn or from this peer address lately; answer without checking."""


def authn_buckets(keys: Keys, s: Settings, sn: str, peerhost: str) -> list[Bucket]:
    """What a device secret check counts against: the sn (backoff), and the peer address when EMQX sent one."""
    out = [Bucket(keys.authn_failures_sn(sn), s.authn_max_failures, s.authn_lock_first, s.authn_lock_longest,
                  s.authn_window)]
    if peerhost:
        out.append(Bucket(keys.authn_failures_host(peerhost), s.authn_max_failures_per_host, s.authn_window,
                          s.authn_window, s.authn_window))
    return out
