"""`adapter api`'s app settles the garbage collector once its lifespan has started it (adapter/collector.py); an
app made for a test or another server does not. A real uvicorn server on the real Redis."""

from __future__ import annotations

import httpx
import pytest

from adapter import app as app_module
from adapter import collector
from adapter.settings import Settings
from tests.support.servers import serve


@pytest.mark.parametrize("settle", [True, False])
def test_the_lifespan_settles_the_collector_of_adapter_api_only(settings: Settings, settle: bool,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(collector, "settle", lambda: calls.append(True))
    with serve(app_module.create_app(settings, settle=settle)) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert calls == ([True] if settle else [])


def test_create_server_app_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    made: dict[str, object] = {}
    monkeypatch.setattr(app_module, "create_app", lambda **kw: made.update(kw))
    app_module.create_server_app()
    assert made == {"settle": True}
