"""The pure authn/authz decisions for EMQX: devices by sn, configured clients by user name."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.auth.throttle import Busy, VerifyLimiter
from adapter.broker import emqx_auth
from adapter.broker.emqx_auth import AuthnRequest, AuthPolicy, AuthzRequest, ClientRule, authorize, covers
from adapter.errors import AppError
from adapter.protocol import topics
from adapter.settings import ConfigError

SIM = {"username": "simulator", "password": "sim-secret-1",
       "publish": ["dma/report/{clientid}/#", "dma/resp/cmd"], "subscribe": ["dma/cmd/{clientid}"]}
CONSOLE = {"username": "console", "publish": ["dma/cmd/+"], "subscribe": ["dma/report/#", "dma/resp/cmd"]}
POLICY = emqx_auth.parse_clients(json.dumps([SIM, CONSOLE]))


def authz(clientid: str, topic: str, action: str = "publish", username: str | None = None) -> str:
    name = clientid if username is None else username
    return authorize(POLICY, AuthzRequest(clientid, name, topic, action))


@pytest.mark.parametrize(("topic", "action", "result"), [
    ("dma/report/GW1/heartbeat", "publish", "allow"),
    ("dma/report/GW1/procs", "publish", "allow"),
    ("dma/report/GW1/a/b", "publish", "allow"),
    ("dma/resp/cmd", "publish", "allow"),
    ("dma/report/GW1/", "publish", "deny"),
    ("dma/report/GW1", "publish", "deny"),
    ("dma/report/GW2/heartbeat", "publish", "deny"),
    ("dma/report/GW1x/heartbeat", "publish", "deny"),
    ("dma/cmd/GW1", "publish", "deny"),
    ("other/topic", "publish", "deny"),
    ("dma/cmd/GW1", "subscribe", "allow"),
    ("dma/cmd/GW2", "subscribe", "deny"),
    ("dma/cmd/+", "subscribe", "deny"),
    ("dma/cmd/#", "subscribe", "deny"),
    ("dma/report/GW1/heartbeat", "subscribe", "deny"),
    ("$share/g/dma/cmd/GW1", "subscribe", "deny"),
    ("dma/cmd/GW1", "all", "deny"),
])
def test_a_device_publishes_its_reports_and_subscribes_to_its_commands(topic: str, action: str,
                                                                       result: str) -> None:
    assert authz("GW1", topic, action) == result
    assert authz("GW1", topic, action, username="") == result


def test_a_client_whose_name_is_not_its_client_id_is_not_a_device() -> None:
    assert authz("GW1", "dma/report/GW1/heartbeat", username="someone") == "ignore"
    assert emqx_auth.device_sn("GW1", "someone") is None
    assert emqx_auth.device_sn("GW1", "") == "GW1"


@pytest.mark.parametrize("clientid", ["+", "#", "a/b", "a+b", "", "x" * 65, "dev ice", "$SYS"])
def test_a_client_id_that_could_smuggle_wildcards_is_not_a_device(clientid: str) -> None:
    assert emqx_auth.device_sn(clientid, clientid) is None
    assert authz(clientid, f"dma/cmd/{clientid}", "subscribe") == "ignore"


def test_a_configured_tool_acts_for_its_own_client_id_only() -> None:
    assert authz("SIM0001", "dma/report/SIM0001/sys", username="simulator") == "allow"
    assert authz("SIM0001", "dma/report/SIM0002/sys", username="simulator") == "deny"
    assert authz("SIM0001", "dma/cmd/SIM0001", "subscribe", username="simulator") == "allow"
    assert authz("SIM0001", "dma/cmd/+", "subscribe", username="simulator") == "deny"
    assert authz("a+b", "dma/cmd/a+b", "subscribe", username="simulator") == "deny"


def test_a_configured_console_by_its_filters() -> None:
    assert authz("console-1", "dma/cmd/GW1", username="console") == "allow"
    assert authz("console-1", "dma/cmd/+", username="console") == "deny", "a publish names one topic"
    assert authz("console-1", "dma/report/GW1/sys", username="console") == "deny"
    assert authz("console-1", "dma/report/+/sys", "subscribe", username="console") == "allow"
    assert authz("console-1", "dma/report/#", "subscribe", username="console") == "allow"
    assert authz("console-1", "dma/#", "subscribe", username="console") == "deny"
    assert authz("console-1", "#", "subscribe", username="console") == "deny"


def test_authn_of_configured_clients() -> None:
    assert emqx_auth.authn_configured(POLICY, AuthnRequest("s1", "simulator", "sim-secret-1")) == "allow"
    assert emqx_auth.authn_configured(POLICY, AuthnRequest("s1", "simulator", "sim-secret-2")) == "deny"
    assert emqx_auth.authn_configured(POLICY, AuthnRequest("s1", "simulator", "")) == "deny"
    assert emqx_auth.authn_configured(POLICY, AuthnRequest("c1", "console", "x")) == "ignore", \
        "no password: another authenticator decides"
    assert emqx_auth.authn_configured(POLICY, AuthnRequest("GW1", "GW1", "x")) is None


@pytest.mark.parametrize(("raw", "message"), [
    ("{}", "JSON list"),
    ("not json", "JSON list"),
    ('[{"username": "a b"}]', "username"),
    ('[{"username": "t", "password": "short"}]', "password"),
    ('[{"username": "t", "publish": "dma/#"}]', "publish"),
    ('[{"username": "t", "subscribe": ["a/#/b"]}]', "not a valid topic filter"),
    ('[{"username": "t", "extra": 1}]', "an object"),
    ('[{"username": "t"}, {"username": "t"}]', "twice"),
])
def test_a_bad_client_list_is_a_one_line_config_error(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        emqx_auth.parse_clients(raw)
    assert "\n" not in str(info.value) and "ADAPTER_MQTT_CLIENTS" in str(info.value)


def test_no_configured_clients() -> None:
    assert emqx_auth.parse_clients("") == emqx_auth.parse_clients("[]") == AuthPolicy({})
    rule = emqx_auth.parse_clients('[{"username": "t"}]').clients["t"]
    assert rule == ClientRule("t", None, (), ())


@pytest.mark.parametrize("body", [None, [], {"username": "a"}, {"clientid": 1},
                                  {"clientid": "c", "password": 5}])
def test_malformed_authn_bodies(body: object) -> None:
    with pytest.raises(AppError) as info:
        emqx_auth.parse_authn(body)
    assert info.value.code == "invalid_params"


def test_authn_body_with_emqx_empty_strings() -> None:
    assert emqx_auth.parse_authn({"clientid": "c", "username": "", "password": "", "peerhost": "1.2.3.4"}) \
        == AuthnRequest("c", "", "", "1.2.3.4")
    with pytest.raises(AppError):
        emqx_auth.parse_authz({"clientid": "c", "username": "", "topic": "", "action": "publish"})


# covers(allowed, requested): every topic the requested filter matches, the allowed one matches too

def _valid(f: str) -> bool:
    try:
        topics.validate_filter(f)
    except AppError:
        return False
    return True


LEVEL = st.sampled_from(["a", "b", "c", "+", "#", "$x"])
FILTER = st.lists(LEVEL, min_size=1, max_size=4).map("/".join).filter(_valid)
NAME = st.lists(st.sampled_from(["a", "b", "c", "d", "$x"]), min_size=1, max_size=5).map("/".join)


@given(FILTER, FILTER, NAME)
def test_covers_is_sound(allowed: str, requested: str, name: str) -> None:
    if covers(allowed, requested) and topics.matches(requested, name):
        assert topics.matches(allowed, name)


@given(FILTER)
def test_a_filter_covers_itself(f: str) -> None:
    assert covers(f, f)


@pytest.mark.parametrize(("allowed", "requested", "result"), [
    ("a/#", "a", True), ("a/#", "a/+/b", True), ("a/+", "a/#", False), ("a/b", "a/+", False),
    ("+/b", "a/b", True), ("#", "$SYS/x", False), ("a/+", "a/b/c", False), ("a/b/c", "a/b", False),
])
def test_covers_examples(allowed: str, requested: str, result: bool) -> None:
    assert covers(allowed, requested) is result


# the bound on argon2id checks (credentials.VerifyLimiter)

async def test_the_limiter_runs_a_few_at_once_queues_a_few_and_refuses_the_rest() -> None:
    limiter = VerifyLimiter(concurrent=2, queue=3)
    gate = asyncio.Event()
    running = peak = 0

    async def check() -> str:
        nonlocal running, peak
        try:
            async with limiter.slot():
                running += 1
                peak = max(peak, running)
                await gate.wait()
                running -= 1
        except Busy:
            return "busy"
        return "done"

    tasks = [asyncio.create_task(check()) for _ in range(8)]
    while sum(t.done() for t in tasks) < 3:  # 2 run, 3 wait, 3 are refused at once
        await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert (peak, results.count("done"), results.count("busy")) == (2, 5, 3)


async def test_the_limiter_gives_back_its_slots() -> None:
    limiter = VerifyLimiter(concurrent=1, queue=0)
    for _ in range(3):
        async with limiter.slot():
            pass
    with pytest.raises(RuntimeError):
        async with limiter.slot():
            raise RuntimeError("check failed")
    async with limiter.slot():  # one again, after the failed check
        pass


