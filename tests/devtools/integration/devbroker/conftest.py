"""Fixtures for the dev broker's integration tests (the harness itself is in `harness.py`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.devtools.integration.devbroker.harness import SHARED, Device, Receiver, RunningBroker, receiving


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as rec:
        yield rec


@pytest.fixture
def make_broker(receiver: Receiver) -> Iterator[Callable[..., RunningBroker]]:
    started: list[RunningBroker] = []

    def make(**overrides: Any) -> RunningBroker:
        broker = RunningBroker.for_receiver(receiver, **overrides)
        started.append(broker)
        return broker

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture
def broker(make_broker: Callable[..., RunningBroker]) -> RunningBroker:
    return make_broker()


@pytest.fixture
def api(broker: RunningBroker) -> Iterator[httpx.Client]:
    with broker.api() as client:
        yield client


@pytest.fixture
def devices(broker: RunningBroker) -> Iterator[Callable[..., Device]]:
    opened: list[Device] = []

    def connect(clientid: str, **kwargs: Any) -> Device:
        device = Device(broker.mqtt_port, clientid, **kwargs)
        opened.append(device)
        return device

    yield connect
    for device in opened:
        device.close()


@pytest.fixture
def shared_emqx() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"EMQX reference samples not found at {SHARED.resolve()} (the shared folder is missing)")
    return SHARED.resolve()
