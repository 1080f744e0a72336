"""Fixtures the integration tests of the delivery engine share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.receiver import Receiver
from tests.support.servers import serve


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    """A loopback receiver and its URL; its hanging requests are let go at the end."""
    rec = Receiver()
    with serve(rec.app()) as url:
        yield rec, url
    rec.release.set()
