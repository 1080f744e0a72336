"""Which exceptions mean "Redis is in trouble: wait, then go on" and which are bugs: the one place that decides
(docs/reliability.md). Every loop that must ride through Redis faults (the delivery pump, the command runner, the
RQ worker's guard, the batchers) asks here instead of catching `RedisError` by itself.

    trouble(exc)          Redis, or the way to it, failed or refused the call for now: wait and try again.
                          Connection errors and timeouts; answers that refuse for a while (OOM, READONLY, MISCONF,
                          BUSY, LOADING, CLUSTERDOWN, TRYAGAIN, MOVED/ASK, UNBLOCKED, NOSCRIPT, MASTERDOWN,
                          NOREPLICAS), a transaction that came back short of its replies; and the errors redis-py
                          itself raises from inside its connection code when a connection is reset under it (an
                          AttributeError or TypeError, redis/redis-py #3546, #4287: `'NoneType' object has no
                          attribute 'writelines'` up to 8.1; 8.2 raises a ConnectionError for that one).
    connection_lost(exc)  trouble in which whether the call ran is unknown and what Redis holds may now be older
                          than what this process saw (a restart, a failover, a demotion): state kept in memory must
                          be rebuilt from Redis.
    connection_broken(exc)  the connection itself failed under a call (closed by the server, reset, a broken pipe,
                          the redis-py reset race): not an answer (LOADING is one) and not a timeout. A pooled
                          connection the server closed while it sat idle fails so on its next use; the batchers
                          send such a call once more on a fresh connection (adapter/store/batcher.py).

Not trouble: an answer that says the call itself is wrong (a script error, WRONGTYPE, a bad argument: `DataError`),
and every other exception: those are bugs, and retrying them forever would hide them.
"""

from __future__ import annotations

import os
import re

import redis
import redis.exceptions as rex

REFUSING = frozenset({"OOM", "READONLY", "MISCONF", "BUSY", "LOADING", "CLUSTERDOWN", "TRYAGAIN", "MOVED", "ASK",
                      "UNBLOCKED", "NOSCRIPT", "MASTERDOWN", "NOREPLICAS"})
"""Error codes of answers that refuse a call for a while (the first word of the error)."""

_REFUSING_TYPES = (rex.OutOfMemoryError, rex.ReadOnlyError, rex.TryAgainError, rex.AskError, rex.ClusterDownError,
                   rex.NoScriptError)
_BUGS = (rex.DataError, rex.ClusterCrossSlotError, rex.CrossSlotTransactionError, rex.InvalidPipelineStack,
         rex.AuthenticationError, rex.NoPermissionError)
_NOT_BROKEN = (rex.BusyLoadingError, rex.AuthenticationError, rex.AuthorizationError, rex.MaxConnectionsError,
               rex.ExternalAuthProviderError, rex.TimeoutError, TimeoutError)
_LOST_CODES = frozenset({"READONLY", "LOADING", "CLUSTERDOWN", "MASTERDOWN", "UNBLOCKED"})
# redis-py's words when a MULTI/EXEC came back with fewer replies than it queued: Redis refused some of them while
# it was in trouble (seen when OOM began or ended between the queueing and the EXEC: RQ's register_death)
_EXEC_SHORT = "Wrong number of response items from pipeline execution"
_REDIS_PY = os.path.dirname(os.path.abspath(redis.__file__)) + os.sep


def trouble(exc: BaseException) -> bool:
    """Whether `exc` is Redis in trouble (wait and try again), not a bug."""
    if isinstance(exc, _BUGS):
        return False
    if isinstance(exc, rex.ResponseError):
        return isinstance(exc, _REFUSING_TYPES) or _code(exc) in REFUSING or str(exc).startswith(_EXEC_SHORT)
    if isinstance(exc, rex.RedisError | rex.RedisClusterException | OSError | TimeoutError):
        return True
    return _redis_py_race(exc)


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` is trouble after which what this process remembers of Redis may be stale (see the module)."""
    if not trouble(exc):
        return False
    if isinstance(exc, rex.ReadOnlyError | rex.ClusterDownError | rex.BusyLoadingError):
        return True
    if isinstance(exc, rex.ResponseError):
        return _code(exc) in _LOST_CODES
    return True


def connection_broken(exc: BaseException) -> bool:
    """Whether `exc` is the connection failing under a call (see the module): not an answer, not a timeout."""
    if isinstance(exc, _NOT_BROKEN):
        return False
    if isinstance(exc, rex.ConnectionError | ConnectionError):  # the built-in one: reset, broken pipe, refused
        return True
    return _redis_py_race(exc)


def _redis_py_race(exc: BaseException) -> bool:
    return isinstance(exc, AttributeError | TypeError | IndexError | KeyError) and raised_in_redis_py(exc)


def raised_in_redis_py(exc: BaseException) -> bool:
    """Whether the innermost frame of `exc`'s traceback is redis-py's own code (a connection reset under it)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_REDIS_PY)


_PIPELINE = re.compile(r"of pipeline caused error: \(?['\"]?")


def _code(exc: BaseException) -> str:
    """The error code of an answer (`BUSY Redis is busy …` -> `BUSY`); redis-py strips the code of the typed ones,
    and a pipeline prefixes the answer (`Command # 1 (ZADD …) of pipeline caused error: ('BUSY …',)`)."""
    status = getattr(exc, "status_code", None)
    if status:
        return str(status)
    text = str(exc)
    annotated = _PIPELINE.search(text)
    if annotated is not None:
        text = text[annotated.end():]
    return text.split(" ", 1)[0] if text[:1].isupper() else ""
