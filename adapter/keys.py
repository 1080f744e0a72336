"""Every Redis key the service writes, built under one prefix. No other module spells a key.

RQ keeps its own `rq:*` keys; the queue names it is given come from here too.
"""

from __future__ import annotations


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # users and login
    def users(self) -> str:
        """Set of user names."""
        return self._k("users")

    def user(self, name: str) -> str:
        """Hash: role, hash (argon2id), created."""
        return self._k("user", name)

    def token(self, token_digest: str) -> str:
        """Hash: user, role; expires with the login (the token itself is never stored)."""
        return self._k("token", token_digest)

    def user_tokens(self, name: str) -> str:
        """Set of a user's token digests, so that removing a user or its password ends its logins."""
        return self._k("user-tokens", name)

    def login_failures_user(self, name: str) -> str:
        return self._k("login-fail", "user", name)

    def login_failures_ip(self, address: str) -> str:
        return self._k("login-fail", "ip", address)

    # metrics shared by every API process
    def metrics(self) -> str:
        """Hash of counters: field = metric name with labels."""
        return self._k("metrics")

    # queues
    def queue(self, name: str) -> str:
        """An RQ queue name (RQ adds its own `rq:queue:` in front)."""
        return f"{self.prefix}-{name}"
