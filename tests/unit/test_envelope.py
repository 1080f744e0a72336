"""`error_response` is the one place an exception becomes the failure envelope (issue 14: one place maps errors)."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest
import redis.exceptions
from starlette.exceptions import HTTPException

from adapter.errors import STATUS_BY_CODE, AppError
from adapter.http.envelope import error_response

ADAPTER = Path(__file__).resolve().parents[2] / "adapter"


def body(exc: BaseException) -> tuple[int, dict, dict[str, str]]:
    r = error_response(exc, "GET /x")
    return r.status_code, orjson.loads(r.body), dict(r.headers)


@pytest.mark.parametrize(("code", "status"), sorted(STATUS_BY_CODE.items()))
def test_app_error_codes_answer_their_status(code: str, status: int) -> None:
    got, envelope, _ = body(AppError(code, "what went wrong"))
    assert (got, envelope) == (status, {"status": "err", "code": code, "msg": "what went wrong"})


def test_app_error_headers_are_kept() -> None:
    _, _, headers = body(AppError("rate_limited", "later", headers={"Retry-After": "7"}))
    assert headers["retry-after"] == "7"


def test_unknown_exception_is_500_without_its_details(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        status, envelope, _ = body(KeyError("secret-key-name"))
    assert (status, envelope) == (500, {"status": "err", "code": "internal", "msg": "internal error"})
    logged = [rec for rec in caplog.records if rec.levelname == "ERROR"]
    assert logged and logged[0].exc_info and "GET /x" in logged[0].getMessage()  # the traceback goes to the log


@pytest.mark.parametrize("exc", [redis.exceptions.ConnectionError("lost"), redis.exceptions.ReadOnlyError("READONLY"),
                                 redis.exceptions.ResponseError("OOM"), TimeoutError("batch deadline"),
                                 ConnectionRefusedError()])
def test_redis_failure_is_503_with_retry_after(exc: BaseException) -> None:
    status, envelope, headers = body(exc)
    assert (status, envelope["code"], headers["retry-after"]) == (503, "unavailable", "1")
    assert "lost" not in envelope["msg"] and "READONLY" not in envelope["msg"]


@pytest.mark.parametrize(("status", "code", "msg"), [(404, "not_found", "no such endpoint"),
                                                     (405, "method_not_allowed", "method not allowed"),
                                                     (413, "too_large", "too big"), (400, "invalid_params", "too big"),
                                                     (418, "invalid_params", "too big"), (502, "internal", "too big")])
def test_starlette_http_errors_by_status(status: int, code: str, msg: str) -> None:
    got, envelope, headers = body(HTTPException(status, "too big", headers={"Allow": "POST"}))
    assert (got, envelope) == (status, {"status": "err", "code": code, "msg": msg})
    assert headers["allow"] == "POST"


def test_no_other_module_builds_the_failure_envelope() -> None:
    builders = sorted(str(p.relative_to(ADAPTER)) for p in ADAPTER.rglob("*.py")
                      if '"status": "err"' in p.read_text() or "'status': 'err'" in p.read_text())
    assert builders == ["http/envelope.py"]
