"""The simulator's MQTT link subscribes as a real DMA agent must (issue 25): to its own command topic, with
QoS 1 (EMQX fires `message.acked` only for QoS 1 deliveries), on every connect (EMQX fires
`session.subscribed` only for a SUBSCRIBE packet, not for a resumed session)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from adapter_devtools.simulator.link import Link, LinkSettings


class Events:
    def on_ready(self) -> None: ...

    def on_down(self) -> None: ...

    def on_command(self, payload: bytes) -> None: ...


@pytest.fixture
def link() -> Iterator[Link]:
    loop = asyncio.new_event_loop()
    try:
        yield Link("SIMU0001", LinkSettings(clean_session=False), Events(), loop)
    finally:
        loop.close()


def connect(link: Link, calls: list[tuple[Any, ...]]) -> None:
    def subscribe(topic: str, qos: int = 0, *args: Any, **kwargs: Any) -> tuple[int, int]:
        calls.append((topic, qos))
        return 0, len(calls)

    link.client.subscribe = subscribe  # type: ignore[method-assign]
    link._on_connect(link.client, None, None, ReasonCode(PacketTypes.CONNACK, "Success"), None)


def test_each_connect_subscribes_to_its_own_command_topic_with_qos_1(link: Link) -> None:
    calls: list[tuple[Any, ...]] = []
    connect(link, calls)
    connect(link, calls)  # a reconnect, even to a resumed session (clean_session False), subscribes again
    assert calls == [("dma/cmd/SIMU0001", 1)] * 2
