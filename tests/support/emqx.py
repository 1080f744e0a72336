"""EMQX event bodies for tests, built from the samples in ../shared/emqx by the rules of its README."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "emqx"


def sample(name: str, **changes: object) -> dict:
    path = SHARED / "events" / f"{name}.json"
    if not path.exists():
        pytest.skip(f"EMQX samples not found at {SHARED}")
    body = json.loads(path.read_text())
    body.update(changes)
    return body


def connected(sn: str, at: int) -> dict:
    return sample("client_connected", clientid=sn, username=sn, connected_at=at, proto_ver=4)


def disconnected(sn: str, at: int, end: int, reason: str = "normal") -> dict:
    return sample("client_disconnected", clientid=sn, username=sn, connected_at=at, disconnected_at=end,
                  reason=reason, proto_ver=4)


def subscribed(sn: str, topic: str | None = None) -> dict:
    return sample("session_subscribed", clientid=sn, username=sn, topic=topic or f"dma/cmd/{sn}")


def published(sn: str, topic: str, payload: object, at: int = 1717000000122, msg_id: str = "A" * 32) -> dict:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return sample("message_publish", clientid=sn, username=sn, topic=topic, payload=text,
                  publish_received_at=at, id=msg_id)


def post(c: httpx.Client, body: object) -> httpx.Response:
    return c.post("/emqx/events", content=json.dumps(body))
