"""Users, passwords (argon2id), login tokens, roles and the login throttle (throttle.py).

A token is 256 random bits shown once as hex; Redis keeps only its SHA-256 digest, with a TTL.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from adapter.auth.throttle import Bucket, Busy, Throttle, VerifyLimiter
from adapter.errors import AppError, invalid, not_found
from adapter.settings import Settings
from adapter.store.connections import texts
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis

ROLES: dict[str, tuple[str, ...]] = {"admin": ("admin", "view"), "viewer": ("view",)}
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class Principal:
    user: str
    role: str

    @property
    def privileges(self) -> tuple[str, ...]:
        return ROLES[self.role]

    def can(self, privilege: str) -> bool:
        return privilege in self.privileges

    def describe(self) -> dict[str, object]:
        return {"user": self.user, "roles": [self.role], "privileges": list(self.privileges)}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "._-@" for c in name):
        raise invalid("user: 1-64 letters, digits or . _ - @")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise invalid(f"role: must be one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < 8:
        raise invalid("password: at least 8 characters")
    if len(password) > 1024:
        raise invalid("password: at most 1024 characters")
    return password


async def hash_secret(password: str) -> str:
    return await anyio.to_thread.run_sync(_hasher.hash, password)


async def verify_secret(stored: str, password: str) -> bool:
    def run() -> bool:
        try:
            return _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(run)


class UserStore:
    def __init__(self, redis: AsyncRedis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def add(self, name: str, role: str, password: str) -> None:
        check_name(name)
        check_role(role)
        hashed = await hash_secret(check_password(password))
        created = await self.redis.hsetnx(self.keys.user(name), "hash", hashed)
        if not created:
            raise AppError("conflict", f"user {name} exists")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.user(name), mapping={"role": role, "created": int(time.time())})
            pipe.sadd(self.keys.users(), name)
            await pipe.execute()

    async def list(self) -> list[dict[str, str]]:
        names = sorted(str(n) for n in await self.redis.smembers(self.keys.users()))
        out = []
        for name in names:
            role = await self.redis.hget(self.keys.user(name), "role")
            out.append({"user": name, "role": str(role or "?")})
        return out

    async def set_password(self, name: str, password: str) -> None:
        if not await self.redis.exists(self.keys.user(name)):
            raise not_found(f"user {name} does not exist")
        hashed = await hash_secret(check_password(password))
        await self.redis.hset(self.keys.user(name), "hash", hashed)
        await self.end_logins(name)

    async def delete(self, name: str) -> None:
        if not await self.redis.exists(self.keys.user(name)):
            raise not_found(f"user {name} does not exist")
        await self.end_logins(name)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.user(name))
            pipe.srem(self.keys.users(), name)
            await pipe.execute()

    async def end_logins(self, name: str) -> None:
        digests = [str(d) for d in await self.redis.smembers(self.keys.user_tokens(name))]
        async with self.redis.pipeline(transaction=True) as pipe:
            for d in digests:
                pipe.delete(self.keys.token(d))
            pipe.delete(self.keys.user_tokens(name))
            await pipe.execute()

    async def ensure_admin(self, password: str, *, reset: bool = False) -> bool:
        """Create `admin` when no user exists (or, with `reset`, set its password). True when it wrote."""
        if reset and await self.redis.exists(self.keys.user("admin")):
            await self.set_password("admin", password)
            return True
        if await self.redis.scard(self.keys.users()):
            return False
        try:
            await self.add("admin", "admin", password)
        except AppError as exc:
            if exc.code != "conflict":
                raise
            return False
        return True

    async def has_users(self) -> bool:
        return bool(await self.redis.scard(self.keys.users()))


class Sessions:
    """Login, logout and token resolution.

    A login attempt is counted before its password is checked (throttle.py): per user name at one client
    address (locks with backoff, so a stranger elsewhere cannot lock `admin` out) and per address (any
    name). At most `limiter`'s bound of checks run at once; past it the answer is 503.
    """

    def __init__(self, redis: AsyncRedis, keys: Keys, settings: Settings,
                 limiter: VerifyLimiter | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.limiter = limiter

    async def login(self, name: str, password: str, address: str) -> tuple[Principal, str]:
        buckets = login_buckets(self.keys, self.settings, name, address)
        throttle = Throttle(self.redis)
        wait = await throttle.take(buckets)
        if wait:
            raise AppError("rate_limited", f"too many failed logins, retry in {wait} s",
                           headers={"Retry-After": str(wait)})
        record = texts(await self.redis.hgetall(self.keys.user(name))) if name else {}
        stored = record.get("hash")
        try:
            good = await self._checked(stored or _DUMMY_HASH, password)
        except Busy:
            await throttle.refund(buckets)
            raise AppError("unavailable", "too many logins are being checked, try again",
                           headers={"Retry-After": "1"}) from None
        if not (good and stored and record.get("role") in ROLES):
            raise AppError("unauthorized", "wrong user or password")
        principal = Principal(name, record["role"])
        token = secrets.token_hex(32)
        ttl = self.settings.token_ttl
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.token(digest(token)), mapping={"user": name, "role": principal.role})
            pipe.expire(self.keys.token(digest(token)), ttl)
            pipe.sadd(self.keys.user_tokens(name), digest(token))
            pipe.expire(self.keys.user_tokens(name), ttl)
            await pipe.execute()
        await throttle.clear(buckets)
        return principal, token

    async def _checked(self, stored: str, password: str) -> bool:
        if self.limiter is None:
            return await verify_secret(stored, password)
        async with self.limiter.slot():
            return await verify_secret(stored, password)

    async def resolve(self, token: str) -> Principal | None:
        if len(token) != 64:
            return None
        record = texts(await self.redis.hgetall(self.keys.token(digest(token))))
        if record.get("role") not in ROLES or not record.get("user"):
            return None
        return Principal(record["user"], record["role"])

    async def logout(self, token: str, principal: Principal) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.token(digest(token)))
            pipe.srem(self.keys.user_tokens(principal.user), digest(token))
            await pipe.execute()


def login_buckets(keys: Keys, s: Settings, name: str, address: str) -> tuple[Bucket, Bucket]:
    """What a login attempt counts against: the name at this address (backoff), and the address alone."""
    return (Bucket(keys.login_failures_pair(name, address), s.login_max_failures, s.login_lock_first,
                   s.login_lock_longest, s.login_window),
            Bucket(keys.login_failures_ip(address), s.login_max_failures_per_ip, s.login_window,
                   s.login_window, s.login_window))


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
