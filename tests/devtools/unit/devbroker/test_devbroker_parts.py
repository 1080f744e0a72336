"""Small pure parts of the dev broker: ids, routing rules, topic checks, auth, config, command line."""

from __future__ import annotations

import base64
import re
from types import SimpleNamespace
from typing import Any, cast

import pytest

from adapter_devtools import devbroker
from adapter_devtools.devbroker.api import BAD_KEY, BAD_TOKEN, HEADER_ERROR, auth_failure
from adapter_devtools.devbroker.auth import check_credentials
from adapter_devtools.devbroker.channels import Channels, Conn
from adapter_devtools.devbroker.command import config_from, parser
from adapter_devtools.devbroker.config import DevBrokerConfig
from adapter_devtools.devbroker.emitter import wants_publish
from adapter_devtools.devbroker.ids import GuidGen, format_guid
from adapter_devtools.devbroker.model import API_CLIENTID, ConnInfo, Origin, origin_of, tag
from adapter_devtools.devbroker.routing import Route, is_topic_filter, is_topic_name, route


def test_public_surface() -> None:
    assert devbroker.__all__ == ["Counters", "DevBrokerConfig", "DevBrokerRuntime", "main", "serve"]


def test_guid_layout() -> None:
    assert format_guid(0x61A4C2B1E5F3A, 0xF44200000, 3) == "00061A4C2B1E5F3A000F442000000003"
    assert format_guid(2**70, 2**50, 2**17) == "0" * 32


def test_guids_are_unique_upper_hex_and_ordered() -> None:
    gen = GuidGen("devbroker@127.0.0.1")
    ids = [gen.next() for _ in range(5000)]
    assert all(re.fullmatch(r"[0-9A-F]{32}", i) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


@pytest.mark.parametrize(("connected", "clean", "qos", "expected"), [
    (True, True, 0, Route.SEND), (True, False, 1, Route.SEND),
    (False, False, 1, Route.QUEUE), (False, False, 2, Route.QUEUE),
    (False, False, 0, Route.DROP), (False, True, 1, Route.DROP),
])
def test_route(connected: bool, clean: bool, qos: int, expected: Route) -> None:
    assert route(connected, clean, qos) is expected


def test_topic_checks() -> None:
    assert is_topic_name("a/b") and not is_topic_name("a/+") and not is_topic_name("$SYS/x")
    assert not is_topic_name("") and not is_topic_name(None)
    assert all(is_topic_filter(f) for f in ("#", "a/+/c", "a/#", "+", "a//b"))
    assert not any(is_topic_filter(f) for f in ("", "a/#/b", "a+", "a/b#", "##"))


def test_tagged_payload_keeps_its_origin() -> None:
    origin = Origin(id="X", clientid="c", username=None, peerhost=None, peername=None, topic="t", payload=b"p",
                    qos=1, retain=False, dup=False, received_at=1)
    tagged = tag(bytearray(b"p"), origin)
    assert tagged == b"p" and bytes(tagged) == b"p" and origin_of(tagged) is origin
    assert origin_of(b"p") is None


def test_rest_published_messages_never_make_message_publish() -> None:
    def origin(clientid: str, topic: str) -> Origin:
        return Origin(id="X", clientid=clientid, username=None, peerhost=None, peername=None, topic=topic,
                      payload=b"", qos=0, retain=False, dup=False, received_at=1)

    assert wants_publish(origin("dev", "dma/report/x"), ("#",))
    assert not wants_publish(origin(API_CLIENTID, "dma/report/x"), ("#",))
    assert not wants_publish(origin("dev", "other"), ("dma/#",))
    assert not wants_publish(origin("dev", "$SYS/x"), ("#",))


def test_channels_list_live_connections_and_offline_persistent_sessions() -> None:
    def conn(clientid: str, clean: bool) -> Conn:
        info = ConnInfo(clientid=clientid, username=None, peerhost="h", peerport=1, sockhost="s", sockport=2,
                        keepalive=60, clean_start=clean, connected_at=1, expiry_interval=0)
        return cast(Conn, SimpleNamespace(info=info, session=object(), clientid=clientid))

    channels = Channels()
    clean, persistent, gone = conn("clean", True), conn("persistent", False), conn("gone", False)
    for c in (clean, persistent, gone):
        channels.opened(c)
    assert [(r.conn.clientid, r.connected) for r in channels.listing({})] == [
        ("clean", True), ("persistent", True), ("gone", True)]
    for c in (clean, persistent, gone):
        channels.closed(c)
    sessions: dict[str, tuple[Any, Any]] = {"persistent": (persistent.session, None)}
    assert [(r.conn.clientid, r.connected) for r in channels.listing(sessions)] == [("persistent", False)]
    assert set(channels.latest) == {"persistent"} and channels.live == {}


def test_mqtt_credentials() -> None:
    assert check_credentials(None, None, None)
    users = {"u": "p"}
    assert check_credentials(users, "u", "p")
    assert not check_credentials(users, "u", "x") and not check_credentials(users, None, None)
    assert not check_credentials(users, "v", "p")


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


def test_api_key_check() -> None:
    creds = ("k", "s")
    assert auth_failure(basic("k", "s"), creds) is None
    assert auth_failure(basic("k", "x"), creds) == BAD_KEY
    assert auth_failure(basic("x", "s"), creds) == BAD_KEY
    assert auth_failure("Basic !!!", creds) == BAD_KEY
    assert auth_failure("Bearer t", creds) == BAD_TOKEN
    assert auth_failure(None, creds) == HEADER_ERROR and auth_failure("Digest x", creds) == HEADER_ERROR


def test_config_from_env_and_overrides() -> None:
    env = {"ADAPTER_INGEST_TOKEN": "tok", "ADAPTER_EMQX_API_KEY": "k", "ADAPTER_EMQX_API_SECRET": "s"}
    config = DevBrokerConfig.from_env(env, mqtt_port=0, users={"u": "p"})
    assert (config.ingest_token, config.api_auth, config.mqtt_port, config.users) == ("tok", ("k", "s"), 0, {"u": "p"})
    empty = DevBrokerConfig.from_env({"ADAPTER_EMQX_API_KEY": ""})
    assert empty.api_auth is None and empty.ingest_token is None and empty.retry_ttl == 45.0
    with pytest.raises(TypeError):
        DevBrokerConfig.from_env({}, nonsense=1)


def test_command_line() -> None:
    args = parser().parse_args(["--mqtt-port", "1884", "--api-port", "0", "--webhook", "http://h/e"])
    config = config_from(args, {"ADAPTER_INGEST_TOKEN": "t"})
    assert (config.mqtt_port, config.api_port, config.ingest_url, config.ingest_token) == (1884, 0, "http://h/e", "t")
    defaults = config_from(parser().parse_args([]), {})
    assert (defaults.mqtt_port, defaults.api_port) == (1883, 18083)
    assert defaults.ingest_url == "http://127.0.0.1:8000/emqx/events"
    assert config_from(parser().parse_args(["--webhook", ""]), {}).ingest_url is None
