"""Fixtures the integration tests share: a loopback callback receiver, and the fake EMQX REST API
(tests/support/fake_emqx.py) with settings that point at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapter.settings import Settings
from tests.support.fake_emqx import KEY, SECRET, FakeEmqx
from tests.support.receiver import Receiver
from tests.support.servers import serve


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    """A loopback receiver and its URL; its hanging requests are let go at the end."""
    rec = Receiver()
    with serve(rec.app()) as url:
        yield rec, url
    rec.release.set()


@pytest.fixture
def emqx_fake() -> FakeEmqx:
    """What the `emqx` fixture serves: a module whose EMQX answers otherwise overrides this with its subclass."""
    return FakeEmqx()


@pytest.fixture
def emqx(emqx_fake: FakeEmqx) -> Iterator[tuple[FakeEmqx, str]]:
    """The fake EMQX REST API on loopback, and its base URL."""
    with serve(emqx_fake.app()) as url:
        yield emqx_fake, url


def emqx_api(url: str) -> dict[str, str]:
    """The settings (as `with_overrides` takes them) of the fake EMQX at `url`, with its API key."""
    return {"emqx_api_url": f"{url}/api/v5", "emqx_api_key": KEY, "emqx_api_secret": SECRET}


@pytest.fixture
def emqx_settings(settings: Settings, emqx: tuple[FakeEmqx, str]) -> Settings:
    """The test's settings pointed at the fake EMQX (a module's `cfg` adds its own knobs to these)."""
    return settings.with_overrides(**emqx_api(emqx[1]))
