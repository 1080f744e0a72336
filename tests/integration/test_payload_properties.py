"""No device payload and no API body makes the service answer 500 (issue 20, item 4): hypothesis drives arbitrary
JSON (deep, large, any unicode, NUL) and text and bytes through `POST /emqx/events` and the commands API of a
live app on the real Redis. Every message is answered 200 and reaches a route (`#`) on a loopback receiver
through the delivery pump in burst mode, its payload unchanged; every command request is a 200 or a 4xx, and a
created command reads back as it was sent."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.delivery.pump import run_pump
from adapter.settings import Settings
from adapter.store.keys import Keys
from tests.conftest import INGEST_TOKEN, login
from tests.support.emqx import published
from tests.support.receiver import Receiver
from tests.support.servers import serve, serve_api, wait_for

SN = "PROP1"
COMMANDS = "/iot/api/v1/remotectl/commands"
INGEST = {"Authorization": f"Bearer {INGEST_TOKEN}"}


# --- JSON of any shape, written by hand so that it may nest deeper than json.dumps can write -----------------


@dataclass(frozen=True)
class Deep:
    """`levels` of arrays or objects around `leaf`: up to 1,100 (orjson reads 1,024; it writes 254)."""

    levels: int
    leaf: Any
    objects: bool


def to_json(value: Any) -> str:
    if isinstance(value, Deep):
        opened, closed = ('{"k":', "}") if value.objects else ("[", "]")
        return opened * value.levels + to_json(value.leaf) + closed * value.levels
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(to_json, value)) + "]"
    return json.dumps(value)


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from(["", "\x00", "a\x00b"])
leaves = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
          | st.floats(allow_nan=False, allow_infinity=False) | text)
shallow = st.recursive(leaves, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(text, kids, max_size=4),
                       max_leaves=12)
deep = st.builds(Deep, st.integers(1, 1100), shallow, st.booleans())
anything = shallow | deep
# big payloads, but events within the ingest's 1 MiB body limit (a larger one is a 413, rightly): json.dumps writes
# "😀" as 12 characters (ensure_ascii), and the event's JSON escapes the backslashes once more: 40,000 of them ~520 KB
big = st.builds(lambda n, c: c * n, st.integers(0, 40_000), st.sampled_from(["x", "é", "\x00", "😀"]))


def report(kind: str, d: Any, sn: str) -> dict[str, Any]:
    if kind == "peripherals":
        return {"sn": sn, "time": 1, "d": [{"nId": "P1", "gwId": "G", "online": True, "msg": d}]}
    if kind == "resp":
        return {"id": "201811260000000001", "sn": sn, "d": {"status": "ok", "result": d}, "status": "ok"}
    return {"sn": sn, "time": 1, "bootTime": 5, "dur": 15, "d": d}


KINDS = ["heartbeat", "procs", "sys", "versions", "peripherals", "other-kind", "resp", "elsewhere"]


def topic_of(kind: str) -> str:
    return {"resp": "dma/resp/cmd", "elsewhere": "any/topic/here"}.get(kind, f"dma/report/{SN}/{kind}")


# a payload: a report of any kind around any JSON, any JSON alone, big text, any text, any bytes (base64)
payloads = st.one_of(
    st.builds(lambda kind, d, sn: (topic_of(kind), to_json(report(kind, d, sn)), "plain"),
              st.sampled_from(KINDS), anything | big, st.sampled_from([SN, SN, "OTHER"])),
    st.builds(lambda kind, v: (topic_of(kind), to_json(v), "plain"), st.sampled_from(KINDS), anything),
    st.builds(lambda kind, t: (topic_of(kind), t, "plain"), st.sampled_from(KINDS), text | big),
    st.builds(lambda kind, b: (topic_of(kind), base64.b64encode(b).decode(), "base64"), st.sampled_from(KINDS),
              st.binary(max_size=300)),
)


@pytest.fixture
def live(settings: Settings) -> Iterator[tuple[httpx.Client, Settings, Receiver, dict[str, Any]]]:
    s = settings.with_overrides(allow_private_urls=True, delivery_schedule="0.2s")
    rec = Receiver()
    with serve(rec.app()) as hook, serve_api(s) as api, httpx.Client(base_url=api, timeout=30) as c:
        c.headers["Authorization"] = f"Bearer {login(c)}"
        r = c.post("/iot/api/v1/msgroute/configs", json={"topic": "#", "name": "all", "url": f"{hook}/all"})
        assert r.status_code == 200, r.text
        yield c, s, rec, r.json()["data"]
        rec.release.set()


async def test_any_payload_is_answered_200_and_routed_unchanged(live: tuple[httpx.Client, Settings, Receiver, Any],
                                                                redis_db: redis.Redis, keys: Keys) -> None:
    c, s, rec, _ = live
    ids = (f"{n:032X}" for n in itertools.count(1))
    sent: dict[str, tuple[str, str, str]] = {}

    def send(topic: str, payload: str, encoding: str) -> httpx.Response:
        msg_id = next(ids)
        body = published(SN, topic, payload, at=1_700_000_000_000 + len(sent), msg_id=msg_id)
        if encoding == "base64":
            body["payload_encoding"] = "base64"
        sent[msg_id] = (topic, payload, encoding)
        return c.post("/emqx/events", headers=INGEST, content=orjson.dumps(body))

    # the route table follows the new route within a second: until then a message could go unrouted
    wait_for(lambda: send("any/topic", "{}", "plain").status_code == 200
             and redis_db.exists(keys.seen(f"msg:{len(sent):032X}", SN)) == 1, timeout=3, what="the route table")
    routed_from = len(sent)  # the first message the route got (those before it were sent before it was loaded)

    @given(payloads)
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    def answered(message: tuple[str, str, str]) -> None:
        r = send(*message)
        assert r.status_code == 200, (message[0], message[1][:200], r.status_code, r.text)

    answered()
    await run_pump(s, asyncio.Event(), burst=True)
    got = {m["id"]: (m["topic"], m["payload"], m["payload_encoding"]) for m in map(orjson.loads, rec.bodies())}
    assert len(rec.received) == len(got)  # once each
    assert {i: v for i, v in sent.items() if int(i, 16) >= routed_from} == got


def command_bodies() -> st.SearchStrategy[Any]:
    """The seed's body with any of its fields replaced by any JSON, fields of its own added, or any JSON."""
    fields = ["from", "to", "command", "method", "body", "publishNow", "maxRetries", "expires", "detached"]
    valid: dict[str, Any] = {"to": [{"sn": SN}], "command": "sh", "body": {"shcmd": "whoami"}}
    changed = st.dictionaries(st.sampled_from([*fields, "extra"]), anything, max_size=3)
    nested_body = st.builds(lambda v: {"body": {"x": v}}, anything)
    return (st.builds(lambda ch: {**valid, **ch}, changed) | st.builds(lambda ch: {**valid, **ch}, nested_body)
            | anything)


def test_any_command_request_is_a_200_or_a_4xx(live: tuple[httpx.Client, Settings, Receiver, Any],
                                              redis_db: redis.Redis) -> None:
    c, *_ = live

    @given(command_bodies())
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    def answered(request: Any) -> None:
        raw = to_json(request)
        r = c.post(COMMANDS, content=raw, headers={"content-type": "application/json"})
        assert r.status_code in (200, 400, 413), (raw[:200], r.status_code, r.text)
        assert r.json()["status"] == ("ok" if r.status_code == 200 else "err")
        if r.status_code != 200:
            return
        body = orjson.loads(raw).get("body", {})
        for target in r.json()["data"]["to"]:
            shown = c.get(COMMANDS, params={"id": target["idStr"]})
            assert shown.status_code == 200, shown.text
            assert shown.json()["data"]["d"] == body

    answered()
