"""`POST /emqx/events` on the wire, through the API's own protocol (adapter/api/protocol.py, what `adapter api` runs)
and through uvicorn's (the ASGI path, `ingest.serve`): both answer alike, in order on a pipelined connection, with
the body in pieces, chunked, over the limit, behind `Expect: 100-continue`, on HTTP/1.0, and after a client left
halfway. Raw sockets, a real uvicorn server, the real Redis."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from adapter.api.protocol import IngestProtocol
from adapter.app import create_app
from adapter.settings import Settings
from adapter.store.keys import Keys
from adapter.store.metrics import LATENCY
from tests.conftest import INGEST_TOKEN, metric_fields
from tests.support.emqx import connected, disconnected, published
from tests.support.servers import serve, wait_for

PROTOCOLS = {"api-protocol": IngestProtocol, "uvicorn-asgi": "auto"}
LIMIT = 2000  # max_body_bytes of these tests


@pytest.fixture(params=sorted(PROTOCOLS))
def server(request: pytest.FixtureRequest, settings: Settings) -> Iterator[tuple[str, int]]:
    with serve(create_app(settings.with_overrides(max_body_bytes=LIMIT)), http=PROTOCOLS[request.param]) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def request(body: bytes, *, token: str | None = INGEST_TOKEN, head: str = "", version: str = "1.1",
            length: bool = True) -> bytes:
    lines = [f"POST /emqx/events HTTP/{version}", "Host: adapter"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n" + head + "\r\n").encode() + body


def event(ev: dict[str, Any]) -> bytes:
    return json.dumps(ev).encode()


class Wire:
    """One connection: raw bytes out, parsed responses in."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.sock = socket.create_connection(addr, timeout=10)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), f"connection closed before a response: {self.buf!r}"
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            assert self._fill(), "connection closed inside a body"
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(status_line.split()[1]), headers, body

    def closed(self) -> bool:
        try:
            return not self._fill() and not self.buf
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def wire(server: tuple[str, int]) -> Iterator[Wire]:
    w = Wire(server)
    yield w
    w.close()


def test_pipelined_requests_are_answered_in_order(wire: Wire, redis_db: redis.Redis, keys: Keys) -> None:
    wire.send(request(event(connected("P1", 1000))) + request(event(connected("P2", 1000)), token="wrong")
              + b"GET /iot/api/v1/nothing-here HTTP/1.1\r\nHost: adapter\r\n\r\n"
              + request(b"{not json") + request(event(disconnected("P1", 1000, 2000))))
    answers = [wire.response() for _ in range(5)]
    assert [status for status, _, _ in answers] == [200, 401, 404, 400, 200]
    assert json.loads(answers[0][2]) == {"status": "ok", "data": {"event": "client.connected"}}
    assert answers[0][1]["content-type"] == "application/json"
    assert json.loads(answers[1][2])["code"] == "unauthorized" and answers[1][1]["www-authenticate"] == "Bearer"
    assert json.loads(answers[3][2])["code"] == "invalid_params"
    assert json.loads(answers[4][2])["data"] == {"event": "client.disconnected"}
    assert redis_db.hget(keys.client("P1"), "online") == "0"
    assert redis_db.exists(keys.client("P2")) == 0


def test_a_body_in_pieces_and_a_chunked_body(wire: Wire, redis_db: redis.Redis, keys: Keys) -> None:
    body = event(connected("B1", 1000))
    first = request(body)
    cut = first.index(b"\r\n\r\n") + 4
    for piece in (first[:cut], first[cut:cut + 10], first[cut + 10:]):
        wire.send(piece)
    assert wire.response()[0] == 200
    other = event(connected("B2", 1000))
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (other[:7], other[7:])) + b"0\r\n\r\n"
    wire.send(request(b"", head="Transfer-Encoding: chunked\r\n", length=False))
    wire.send(chunked)
    assert wire.response()[0] == 200
    assert redis_db.hget(keys.client("B1"), "online") == "1" and redis_db.hget(keys.client("B2"), "online") == "1"


def test_a_body_over_the_limit_is_refused(server: tuple[str, int], redis_db: redis.Redis, keys: Keys) -> None:
    big = event({**connected("L1", 1000), "padding": "x" * LIMIT})
    declared = Wire(server)
    declared.send(request(big))
    status, _, body = declared.response()
    assert status == 413 and json.loads(body)["code"] == "too_large"
    declared.close()
    streamed = Wire(server)
    streamed.send(request(b"", head="Transfer-Encoding: chunked\r\n", length=False))
    streamed.send(b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 500]), big[i:i + 500]) for i in range(0, len(big), 500)))
    streamed.send(b"0\r\n\r\n")
    assert streamed.response()[0] == 413
    streamed.close()
    assert redis_db.exists(keys.client("L1")) == 0


def test_expect_100_continue(wire: Wire, redis_db: redis.Redis, keys: Keys) -> None:
    body = event(connected("E1", 1000))
    wire.send(request(b"", head=f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n", length=False))
    assert wire.response()[0] == 100
    wire.send(body)
    assert wire.response()[0] == 200
    assert redis_db.hget(keys.client("E1"), "online") == "1"


def test_http_1_0_closes_after_the_answer(wire: Wire) -> None:
    wire.send(request(event(connected("H1", 1000)), version="1.0"))
    status, headers, _ = wire.response()
    assert status == 200 and headers.get("connection") == "close"
    assert wait_for(wire.closed, what="the server to close the connection")


def test_a_client_gone_halfway_stores_nothing_and_the_server_goes_on(server: tuple[str, int], redis_db: redis.Redis,
                                                                    keys: Keys) -> None:
    body = event(connected("G1", 1000))
    gone = Wire(server)
    gone.send(request(body)[:-10])
    gone.close()
    after = Wire(server)
    after.send(request(event(connected("G2", 1000))))
    assert after.response()[0] == 200
    after.close()
    assert redis_db.exists(keys.client("G1")) == 0 and redis_db.hget(keys.client("G2"), "online") == "1"


def test_answers_are_counted(wire: Wire, redis_db: redis.Redis, keys: Keys) -> None:
    for n in range(3):
        wire.send(request(event(connected(f"C{n}", 1000))))
        assert wire.response()[0] == 200
    field = f'{LATENCY}_count{{method="POST",route="/emqx/events"}}'
    assert wait_for(lambda: metric_fields(redis_db, keys).get(field, 0) >= 3, what="the ingest's latency count")


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_a_body_past_the_flow_control_mark(protocol: str, settings: Settings) -> None:
    """uvicorn stops reading past 64 KiB of body until the app asks for more: a 300 KB event still goes through."""
    payload = "x" * 300_000
    body = event(published("F1", "dma/other/F1", payload))
    assert len(body) > 300_000
    with serve(create_app(settings), http=PROTOCOLS[protocol]) as url:
        host, port = url.removeprefix("http://").split(":")
        w = Wire((host, int(port)))
        w.send(request(body))
        status, _, answer = w.response()
        w.close()
    assert status == 200, answer
    assert json.loads(answer) == {"status": "ok", "data": {"event": "message.publish"}}  # read whole, parsed


# --- a train: the pipelined ingest requests of one connection answered together (adapter/api/protocol.py) -------


def labels(answers: list[tuple[int, dict[str, str], bytes]]) -> list[object]:
    return [json.loads(body)["data"]["event"] if status == 200 else status for status, _, body in answers]


def test_a_long_pipeline_is_answered_whole_and_in_order(wire: Wire, redis_db: redis.Redis, keys: Keys) -> None:
    """More than a train holds (MAX_AHEAD): the rest wait their turn; every answer in request order, an ASGI
    request and refused ones among them."""
    sent, expected = [], []
    for i in range(130):
        if i == 60:
            sent.append(b"GET /iot/api/v1/nothing-here HTTP/1.1\r\nHost: adapter\r\n\r\n")
            expected.append(404)
        elif i % 17 == 5:
            sent.append(request(b"{not json"))
            expected.append(400)
        elif i % 2:
            sent.append(request(event(disconnected(f"L{i}", 1000, 2000))))
            expected.append("client.disconnected")
        else:
            sent.append(request(event(connected(f"L{i}", 1000))))
            expected.append("client.connected")
    wire.send(b"".join(sent))
    assert labels([wire.response() for _ in sent]) == expected
    assert redis_db.hget(keys.client("L0"), "online") == "1" and redis_db.hget(keys.client("L128"), "online") == "1"
    wire.send(request(event(connected("L-after", 1000))))  # the connection goes on
    assert wire.response()[0] == 200


@pytest.fixture
def recorded(settings: Settings) -> Iterator[tuple[tuple[str, int], dict[str, Any]]]:
    """`adapter api`'s protocol, its ingest's submissions recorded: the device of each command in submission
    order, and the most submissions waiting on Redis at once."""
    app = create_app(settings)
    with serve(app, http=IngestProtocol) as url:
        ingest = app.state.services.extras["ingest"]
        seen: dict[str, Any] = {"order": [], "most": 0, "now": 0}
        submit = ingest.batcher.submit

        async def recording(commands: Any) -> Any:
            seen["order"] += [re.search(rb"(T\d{3})", bytes(c)).group(1).decode() for c in commands]  # type: ignore[union-attr]
            seen["now"] += 1
            seen["most"] = max(seen["most"], seen["now"])
            try:
                return await submit(commands)
            finally:
                seen["now"] -= 1

        ingest.batcher.submit = recording
        host, port = url.removeprefix("http://").split(":")
        yield (host, int(port)), seen


def test_a_connections_pipelined_events_go_to_redis_together_in_request_order(
        recorded: tuple[tuple[str, int], dict[str, Any]], redis_db: redis.Redis, keys: Keys) -> None:
    addr, seen = recorded
    ids = [f"T{i:03d}" for i in range(60)]
    w = Wire(addr)
    w.send(b"".join(request(event(connected(sn, 1000))) for sn in ids))
    answers = [w.response() for _ in ids]
    w.close()
    assert labels(answers) == ["client.connected"] * len(ids)
    assert seen["order"] == ids  # submitted in request order
    assert seen["most"] > 1  # and not one at a time: later requests did not wait for the earlier answers
    assert all(redis_db.hget(keys.client(sn), "online") == "1" for sn in ids)


def test_a_client_gone_in_the_middle_of_a_train(recorded: tuple[tuple[str, int], dict[str, Any]],
                                                redis_db: redis.Redis, keys: Keys) -> None:
    addr, seen = recorded
    gone = Wire(addr)
    gone.send(b"".join(request(event(connected(f"T{i:03d}", 1000))) for i in range(100, 140)) + request(b"{")[:-1])
    gone.close()
    after = Wire(addr)
    after.send(request(event(connected("T999", 1000))))
    assert after.response()[0] == 200
    after.close()
    assert wait_for(lambda: seen["now"] == 0, what="the gone client's events to end")
    assert seen["order"][-1] == "T999"
