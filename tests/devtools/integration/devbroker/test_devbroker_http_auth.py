"""The dev broker with `auth_url`: CONNECT, SUBSCRIBE and PUBLISH decided by EMQX-style HTTP authn/authz,
first against a scripted fake of the two endpoints, then against the service's real ones (Redis DB 15)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapter.settings import Settings
from adapter_devtools.devbroker import DevBrokerConfig
from adapter_devtools.devbroker.auth import PLUGIN_PATH, plugins
from adapter_devtools.devbroker.command import config_from, parser
from adapter_devtools.devbroker.http_auth import HTTP_PLUGIN_PATH, AuthzCache
from tests.conftest import INGEST_TOKEN as SERVICE_TOKEN
from tests.conftest import login
from tests.devtools.integration.devbroker.harness import INGEST_TOKEN, Device, Receiver, RunningBroker, wait_for
from tests.support.servers import free_port, serve, serve_api

NOT_AUTHORIZED = 0x87  # paho's reason code for an MQTT 3.1.1 CONNACK 5


@dataclass
class FakeAuth:
    """Answers /authn by client id and /authz by (client id, action, topic); "deny" for anything else."""

    authn: dict[str, str] = field(default_factory=dict)
    authz: dict[tuple[str, str, str], str] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def answer(self, request: Request) -> Response:
        body = await request.json()
        path = request.url.path
        with self.lock:
            self.calls.append((path, dict(request.headers), body))
        if path == "/emqx/authn":
            result = self.authn.get(body["clientid"], "deny")
        else:
            result = self.authz.get((body["clientid"], body["action"], body["topic"]), "deny")
        return JSONResponse({"result": result})

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for p, _, body in self.calls if p == path]

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/emqx/authn", self.answer, methods=["POST"]),
                                 Route("/emqx/authz", self.answer, methods=["POST"])])


@pytest.fixture
def fake() -> Iterator[tuple[FakeAuth, str]]:
    auth = FakeAuth()
    with serve(auth.app(), lifespan="off") as url:
        yield auth, f"{url}/emqx"


@pytest.fixture
def clients() -> Iterator[Callable[..., Device]]:
    opened: list[Device] = []

    def connect(port: int, clientid: str, **kwargs: Any) -> Device:
        device = Device(port, clientid, **kwargs)
        opened.append(device)
        return device

    yield connect
    for device in opened:
        device.close()


def suback(device: Device, topic: str, qos: int = 1) -> int:
    codes: list[int] = []
    done = threading.Event()

    def on_subscribe(_c: Any, _u: Any, _mid: Any, reason_codes: list[Any], _p: Any) -> None:
        codes.extend(int(rc.value) for rc in reason_codes)
        done.set()

    device.client.on_subscribe = on_subscribe
    device.client.subscribe(topic, qos)
    assert done.wait(5), f"no SUBACK for {topic}"
    return codes[0]


def refused_code(device: Device) -> int:
    assert device.connack and device.connack[0].is_failure, device.connack
    return int(device.connack[0].value)


def test_connect_is_allowed_only_on_an_allow(fake: tuple[FakeAuth, str], make_broker: Callable[..., RunningBroker],
                                              clients: Callable[..., Device]) -> None:
    auth, url = fake
    auth.authn.update({"good": "allow", "bad": "deny", "unsure": "ignore"})
    broker = make_broker(auth_url=url)
    assert clients(broker.mqtt_port, "good", username="u1", password="p1").accepted
    assert refused_code(clients(broker.mqtt_port, "bad", username="u1", password="p1")) == NOT_AUTHORIZED
    assert refused_code(clients(broker.mqtt_port, "unsure")) == NOT_AUTHORIZED
    assert auth.bodies("/emqx/authn")[0] == {"clientid": "good", "username": "u1", "password": "p1",
                                            "peerhost": "127.0.0.1"}
    assert auth.bodies("/emqx/authn")[2] == {"clientid": "unsure", "username": "", "password": "",
                                            "peerhost": "127.0.0.1"}
    headers = auth.calls[0][1]
    assert headers["authorization"] == f"Bearer {INGEST_TOKEN}"
    with broker.api() as api:
        listed = [c["clientid"] for c in api.get("/api/v5/clients").json()["data"]]
    assert listed == ["good"]


def test_an_unreachable_auth_service_refuses(make_broker: Callable[..., RunningBroker],
                                            clients: Callable[..., Device]) -> None:
    broker = make_broker(auth_url=f"http://127.0.0.1:{free_port()}/emqx", auth_timeout=1.0)
    assert refused_code(clients(broker.mqtt_port, "anyone")) == NOT_AUTHORIZED


def test_a_denied_subscription_gets_0x80(fake: tuple[FakeAuth, str], make_broker: Callable[..., RunningBroker],
                                        clients: Callable[..., Device], receiver: Receiver) -> None:
    auth, url = fake
    auth.authn["dev"] = "allow"
    auth.authz[("dev", "subscribe", "dma/cmd/dev")] = "allow"
    broker = make_broker(auth_url=url)
    dev = clients(broker.mqtt_port, "dev")
    assert suback(dev, "dma/cmd/other") == 0x80
    assert suback(dev, "dma/cmd/dev", qos=1) == 1
    assert auth.bodies("/emqx/authz")[-1] == {"clientid": "dev", "username": "", "peerhost": "127.0.0.1",
                                              "topic": "dma/cmd/dev", "action": "subscribe", "qos": "1",
                                              "retain": "false"}
    subscribed = receiver.wait("session.subscribed", "dev")
    assert [e["topic"] for e in subscribed] == ["dma/cmd/dev"]


def test_a_denied_publish_is_dropped(fake: tuple[FakeAuth, str], make_broker: Callable[..., RunningBroker],
                                     clients: Callable[..., Device], receiver: Receiver) -> None:
    auth, url = fake
    auth.authn.update({"pub": "allow", "sub": "allow"})
    auth.authz[("sub", "subscribe", "t/#")] = "allow"
    auth.authz[("pub", "publish", "t/ok")] = "allow"
    broker = make_broker(auth_url=url)
    sub = clients(broker.mqtt_port, "sub")
    pub = clients(broker.mqtt_port, "pub")
    assert suback(sub, "t/#") == 1
    pub.publish("t/no", b"x", qos=1)
    pub.publish("t/ok", b"y", qos=1)
    wait_for(lambda: sub.messages, what="the allowed message")
    receiver.wait("message.publish", "pub")
    pub.publish("t/ok", b"z", qos=1)  # the cached decision: no second call
    wait_for(lambda: len(sub.messages) == 2, what="the second allowed message")
    assert [(m.topic, m.payload) for m in sub.messages] == [("t/ok", b"y"), ("t/ok", b"z")]
    published = receiver.wait("message.publish", "pub", count=2)
    assert [e["topic"] for e in published] == ["t/ok", "t/ok"]
    pub_calls = [b for b in auth.bodies("/emqx/authz") if b["clientid"] == "pub"]
    assert [(b["topic"], b["qos"], b["retain"]) for b in pub_calls] == [("t/no", "1", "false"), ("t/ok", "1", "false")]


def test_without_auth_url_no_call_is_made(fake: tuple[FakeAuth, str], make_broker: Callable[..., RunningBroker],
                                          clients: Callable[..., Device]) -> None:
    auth, _ = fake
    broker = make_broker()
    dev = clients(broker.mqtt_port, "free")
    assert dev.accepted
    assert suback(dev, "anything/#") == 1
    assert auth.calls == []


def test_the_authz_cache_expires_and_is_bounded() -> None:
    cache = AuthzCache(ttl=60, max_size=2)
    cache.put("c", "publish", "a", True, now=0)
    assert cache.get("c", "publish", "a", now=59.9) is True
    assert cache.get("c", "publish", "a", now=60) is None
    assert cache.get("c", "subscribe", "a", now=1) is None
    cache.put("c", "publish", "b", False, now=1)
    cache.put("c", "publish", "c", True, now=2)
    assert cache.get("c", "publish", "a", now=3) is None  # the oldest went first
    assert cache.get("c", "publish", "b", now=3) is False
    cache.forget("c")
    assert cache.get("c", "publish", "c", now=3) is None
    off = AuthzCache(ttl=0)
    off.put("c", "publish", "a", True, now=0)
    assert off.get("c", "publish", "a", now=0) is None


def test_against_the_real_service(settings: Settings, make_broker: Callable[..., RunningBroker],
                                  clients: Callable[..., Device], receiver: Receiver) -> None:
    with serve_api(settings) as url, httpx.Client(base_url=url, timeout=10) as http:
        token = login(http)
        r = http.post("/iot/api/v1/devices/credentials", json={"sn": "GW0001"},
                      headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        secret = str(r.json()["data"]["secret"])
        broker = make_broker(auth_url=f"{url}/emqx", ingest_token=SERVICE_TOKEN)
        wrong = clients(broker.mqtt_port, "GW0001", username="GW0001", password="not-the-secret")
        assert refused_code(wrong) == NOT_AUTHORIZED
        dev = clients(broker.mqtt_port, "GW0001", username="GW0001", password=secret)
        assert dev.accepted
        assert suback(dev, "dma/cmd/GW0002") == 0x80
        assert suback(dev, "dma/cmd/GW0001") == 1
        dev.publish("dma/report/GW0002/status", b"{}", qos=1)
        dev.publish("dma/report/GW0001/status", b"{}", qos=1)
        published = receiver.wait("message.publish", "GW0001")
        assert [e["topic"] for e in published] == ["dma/report/GW0001/status"]


def test_the_option_is_off_by_default_and_wires_the_plugin() -> None:
    assert config_from(parser().parse_args([]), {}).auth_url is None
    on = config_from(parser().parse_args(["--auth-url", "http://127.0.0.1:8000/emqx"]), {"ADAPTER_INGEST_TOKEN": "t"})
    assert on.auth_url == "http://127.0.0.1:8000/emqx"
    assert set(plugins(on)) == {PLUGIN_PATH, HTTP_PLUGIN_PATH}
    assert plugins(on)[HTTP_PLUGIN_PATH]["token"] == "t"
    assert set(plugins(DevBrokerConfig())) == {PLUGIN_PATH}
