"""Users and logins, the counters every API process shares, the RQ queues, device credentials: their keys."""

from __future__ import annotations

from adapter.store.keys.base import KeyBase


class AccessKeys(KeyBase):
    # users and login
    def users(self) -> str:
        """Set of user names."""
        return self._t(self.auth_tag, "users")

    def user(self, name: str) -> str:
        """Hash: role, hash (argon2id), created."""
        return self._t(self.auth_tag, "user", name)

    def token(self, token_digest: str) -> str:
        """Hash: user, role; expires with the login (the token itself is never stored)."""
        return self._t(self.auth_tag, "token", token_digest)

    def user_tokens(self, name: str) -> str:
        """Set of a user's token digests, so that removing a user or its password ends its logins."""
        return self._t(self.auth_tag, "user-tokens", name)

    def login_failures_pair(self, name: str, address: str) -> str:
        """Hash (throttle.lua): a user name's login attempts from one client address, and its lock."""
        return self._t(self.auth_tag, "login-fail", "pair", name, address)

    def login_failures_ip(self, address: str) -> str:
        """Hash (throttle.lua): one client address's login attempts, whatever the user name."""
        return self._t(self.auth_tag, "login-fail", "ip", address)

    # metrics shared by every API process
    def metrics(self) -> str:
        """Hash of counters: field = metric name with labels."""
        return self._t(self.meta_tag, "metrics")

    def metrics_in(self, p: int) -> str:
        """The counters a script of shard `p` adds to (it may touch only its own slot); `GET /metrics` sums them
        with `metrics()`. On one Redis it is `metrics()` itself."""
        return self._t(self.shard_tag(p), "metrics")

    # queues
    def queue(self, name: str) -> str:
        """An RQ queue name (RQ adds its own `rq:queue:` in front)."""
        return f"{self.prefix}-{name}"

    # device credentials for EMQX's HTTP authentication (issue: run with real EMQX)
    def credential(self, sn: str) -> str:
        """Hash of one device's credential (in `sn`'s slot): hash (argon2id of the secret), created (s)."""
        return self._t(self.tag(sn), "cred", sn)

    def credentials(self, p: int = 0) -> str:
        """Sorted set of the sns of shard `p` that have a credential, scored by creation time (s)."""
        return self._t(self.shard_tag(p), "creds")

    def authn_failures_sn(self, sn: str) -> str:
        """Hash (throttle.lua): secret checks of one device sn that EMQX asked for, and its lock. In `{auth}` with
        the peer's bucket (one throttle.lua call counts both); only checks that run argon2 touch it."""
        return self._t(self.auth_tag, "authn-fail", "sn", sn)

    def authn_failures_host(self, peerhost: str) -> str:
        """Hash (throttle.lua): device secret checks from one peer address (EMQX's `peerhost`)."""
        return self._t(self.auth_tag, "authn-fail", "host", peerhost)

    def authn_cache(self, sn: str) -> str:
        """A short-lived mark that a device's secret was verified (sha256 of sn + secret), so that reconnect
        storms do not each pay a full argon2id check. In `sn`'s slot, beside its credential."""
        return self._t(self.tag(sn), "authn-ok", sn)
