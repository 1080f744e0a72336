"""The one error type of the service, and the codes it speaks.

Every failure a client may see is an `AppError`: a machine code, a human message and an HTTP status.
`adapter.http.envelope.error_response` is the only place that turns an exception (this one or any other) into
the `{"status":"err","code","msg"}` envelope.
"""

from __future__ import annotations

STATUS_BY_CODE: dict[str, int] = {
    "invalid_params": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "too_large": 413,
    "rate_limited": 429,
    "internal": 500,
    "broker_unavailable": 502,
    "unavailable": 503,
}


class AppError(Exception):
    """A failure with a code from STATUS_BY_CODE and a message safe to show a client."""

    def __init__(self, code: str, msg: str, *, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status if status is not None else STATUS_BY_CODE[code]
        self.headers = headers or {}


def invalid(msg: str) -> AppError:
    return AppError("invalid_params", msg)


def not_found(msg: str = "not found") -> AppError:
    return AppError("not_found", msg)


def storage_unavailable() -> AppError:
    """Redis failed (lost, timed out, READONLY, OOM, BUSY, MISCONF): 503, and the client may retry in a second."""
    return AppError("unavailable", "storage unavailable, try again", headers={"Retry-After": "1"})
