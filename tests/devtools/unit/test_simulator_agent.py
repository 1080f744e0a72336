"""The simulated DMA agent without MQTT: payload shapes, command handling, allow-list, test behaviours."""

from __future__ import annotations

import asyncio
import base64
import os
import pwd
import random
import threading
import time

import orjson
import pytest

from adapter_devtools.simulator import reports
from adapter_devtools.simulator.agent import Agent, AgentOptions, CommandDesk
from adapter_devtools.simulator.cli import parse_config
from adapter_devtools.simulator.commands import (
    DEFAULT_ALLOW,
    Command,
    Outcome,
    ShPolicy,
    execute,
    parse_command,
    response,
)
from adapter_devtools.simulator.runner import SimConfig, device_sns, gateway_count

SN = "SIMU0001"


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def sh(shcmd: str, cid: int | str = 201811260000000001) -> Command:
    return Command(id=cid, sender="iot_web_console", command="sh", method="", body={"shcmd": shcmd})


def decoded(outcome: Outcome) -> str:
    return base64.b64decode(outcome.result).decode()


def make_agent(gateway: bool = False, **kw: object) -> Agent:
    options = AgentOptions(interval=5, gateway=gateway, **kw)  # type: ignore[arg-type]
    return Agent(SN, options, random.Random(7), clock=lambda: 1_000_000.0)


# -- topics and report payloads --


def test_topics() -> None:
    assert reports.cmd_topic(SN) == "dma/cmd/SIMU0001"
    assert reports.report_topic(SN, "heartbeat") == "dma/report/SIMU0001/heartbeat"
    assert reports.RESP_TOPIC == "dma/resp/cmd"
    with pytest.raises(ValueError):
        reports.report_topic(SN, "other")


def test_heartbeat_shape_and_dur_type() -> None:
    hb = reports.heartbeat(SN, 12, 1_700_000_000, 5.0)
    assert hb == {"sn": SN, "time": 12, "bootTime": 1_700_000_000, "dur": 5}
    assert isinstance(hb["dur"], int)
    assert reports.heartbeat(SN, 0, 1, 0.5)["dur"] == 0.5


def test_plain_device_reports_heartbeat_procs_sys_versions() -> None:
    payloads = dict(make_agent().report_payloads())
    assert list(payloads) == ["heartbeat", "procs", "sys", "versions"]
    assert set(payloads["heartbeat"]) == {"sn", "time", "bootTime", "dur"}
    for kind in ("procs", "sys", "versions"):
        assert set(payloads[kind]) == {"sn", "time", "d"}
        assert payloads[kind]["sn"] == SN
    assert all(set(p) == {"n", "mem", "cpu"} for p in payloads["procs"]["d"])
    assert set(payloads["sys"]["d"]) == {"free", "load", "used"}
    assert all(set(v) == {"n", "v"} for v in payloads["versions"]["d"])
    assert {"n": "monitor", "v": "1.0.0 20181114-173644"} in payloads["versions"]["d"]


def test_uptime_follows_the_agent_clock() -> None:
    now = [1000.0]
    agent = Agent(SN, AgentOptions(), random.Random(1), clock=lambda: now[0])
    now[0] = 1042.9
    hb = dict(agent.report_payloads())["heartbeat"]
    assert (hb["time"], hb["bootTime"]) == (42, 1000)


def test_gateway_reports_its_peripherals() -> None:
    payloads = dict(make_agent(gateway=True, toggle_chance=0.0).report_payloads())
    rows = payloads["peripherals"]["d"]
    assert len(rows) == 3
    for row in rows:
        assert set(row) == {"nId", "gwId", "online", "msg"}
        assert row["gwId"] == SN and row["online"] is True and isinstance(row["msg"], dict)
    assert len({row["nId"] for row in rows}) == 3


def test_gateway_toggles_one_peripheral_when_chance_hits() -> None:
    agent = make_agent(gateway=True, toggle_chance=1.0)
    rows = dict(agent.report_payloads())["peripherals"]["d"]
    assert sum(not row["online"] for row in rows) == 1


def test_toggle_one_flips_exactly_one() -> None:
    before = reports.new_peripherals(SN, 4)
    after = reports.toggle_one(before, random.Random(3))
    assert sum(a.online != b.online for a, b in zip(before, after, strict=True)) == 1
    assert reports.toggle_one([], random.Random(3)) == []


def test_report_messages_are_json_on_report_topics() -> None:
    messages = make_agent(gateway=True).report_messages()
    kinds = [topic.rsplit("/", 1)[1] for topic, _ in messages]
    assert kinds == ["heartbeat", "procs", "sys", "versions", "peripherals"]
    for topic, payload in messages:
        assert topic.startswith(f"dma/report/{SN}/")
        assert orjson.loads(payload)["sn"] == SN


# -- parsing and executing commands --


def test_parse_command_keeps_the_id_as_sent() -> None:
    raw = b'{"id":201811260000000001,"from":"w","command":"sh","method":"","d":{"shcmd":"date"},' \
          b'"detached":true,"expires":60,"time":5}'
    cmd = parse_command(raw)
    assert cmd is not None
    assert cmd.id == 201811260000000001 and cmd.sender == "w" and cmd.body == {"shcmd": "date"}
    assert (cmd.detached, cmd.expires, cmd.time) == (True, 60, 5)
    as_string = parse_command(b'{"id":"201811260000000001","command":"sh"}')
    assert as_string is not None and as_string.id == "201811260000000001"


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b'{"command":"sh"}', b'{"id":true}', b'{"id":null}'])
def test_parse_command_without_an_id_is_none(raw: bytes) -> None:
    assert parse_command(raw) is None


def test_whoami_result_is_base64_of_the_current_user() -> None:
    outcome = execute(sh("whoami"), ShPolicy())
    assert (outcome.status, outcome.exestatus, outcome.msg) == ("ok", "ok", "")
    assert decoded(outcome).strip() == current_user()


def test_no_shell_is_involved() -> None:
    outcome = execute(sh("echo $HOME; id"), ShPolicy())
    assert outcome.status == "ok"
    assert decoded(outcome) == "$HOME; id\n"


@pytest.mark.parametrize("shcmd", ["rm -rf /tmp/x", "/usr/bin/whoami", "whoami;", "sh -c whoami", "python3"])
def test_commands_outside_the_allow_list_are_refused(shcmd: str) -> None:
    outcome = execute(sh(shcmd), ShPolicy())
    assert outcome == Outcome.err("not allowed")


def test_allow_list_is_configurable() -> None:
    assert execute(sh("whoami"), ShPolicy(allow=frozenset({"date"}))).msg == "not allowed"
    assert execute(sh("date"), ShPolicy(allow=frozenset({"date"}))).status == "ok"
    assert set(DEFAULT_ALLOW) >= {"whoami", "uptime", "date", "echo", "hostname", "ls", "uname", "id"}


@pytest.mark.parametrize("body", [None, {}, {"shcmd": ""}, {"shcmd": 3}, {"shcmd": "echo 'open"}])
def test_bad_sh_bodies_are_errors(body: object) -> None:
    cmd = Command(id=1, sender="w", command="sh", method="", body=body)
    outcome = execute(cmd, ShPolicy())
    assert outcome.status == "err" and outcome.msg


def test_non_zero_exit_is_an_error_with_a_message() -> None:
    outcome = execute(sh("ls /definitely/not/here"), ShPolicy())
    assert (outcome.status, outcome.exestatus) == ("err", "err")
    assert outcome.msg.startswith("exit ")


def test_slow_commands_time_out() -> None:
    started = time.monotonic()
    outcome = execute(sh("sleep 5"), ShPolicy(allow=frozenset({"sleep"}), timeout=0.2))
    assert outcome.status == "err" and outcome.msg.startswith("timeout")
    assert time.monotonic() - started < 3


def test_unknown_commands_are_errors() -> None:
    cmd = Command(id=1, sender="w", command="reboot", method="set", body={})
    assert execute(cmd, ShPolicy()) == Outcome.err("unknown command")


def test_response_shape() -> None:
    body = response(SN, sh("whoami", cid=42), Outcome.ok("cm9vdAo="), 99)
    assert body == {
        "id": 42, "sn": SN, "command": "sh", "from": "iot_web_console",
        "d": {"exestatus": "ok", "msg": "", "result": "cm9vdAo=", "status": "ok"},
        "status": "ok", "time": 99,
    }


# -- the agent's desk: fail-first, duplicates, no-answer --


async def test_fail_first_answers_err_to_the_first_k_receptions_of_each_id() -> None:
    desk = CommandDesk(ShPolicy(), fail_first=2, run=lambda c, p: Outcome.ok())
    statuses = [(await desk.handle(sh("whoami", cid=cid))).status for cid in (1, 1, 2, 1, 2, 2)]
    assert statuses == ["err", "err", "err", "ok", "err", "ok"]


async def test_fail_first_message_says_it_is_simulated() -> None:
    desk = CommandDesk(ShPolicy(), fail_first=1, run=lambda c, p: Outcome.ok())
    assert await desk.handle(sh("whoami")) == Outcome.err("simulated failure 1/1")


async def test_a_duplicate_while_running_shares_the_run_and_a_later_one_runs_again() -> None:
    calls: list[int] = []
    release = threading.Event()

    def slow_run(cmd: Command, policy: ShPolicy) -> Outcome:
        calls.append(1)
        release.wait(5)
        return Outcome.ok(str(len(calls)))

    desk = CommandDesk(ShPolicy(), run=slow_run)
    first = asyncio.ensure_future(desk.handle(sh("whoami")))
    second = asyncio.ensure_future(desk.handle(sh("whoami")))
    await asyncio.sleep(0)
    release.set()
    a, b = await asyncio.gather(first, second)
    c = await desk.handle(sh("whoami"))
    assert a == b == Outcome.ok("1")
    assert c == Outcome.ok("2")
    assert len(calls) == 2


async def test_agent_answers_on_resp_topic() -> None:
    agent = make_agent()
    answer = await agent.on_command(orjson.dumps({"id": 7, "from": "w", "command": "sh",
                                                   "d": {"shcmd": "whoami"}}))
    assert answer is not None
    topic, payload = answer
    body = orjson.loads(payload)
    assert topic == "dma/resp/cmd"
    assert (body["id"], body["sn"], body["status"]) == (7, SN, "ok")
    assert base64.b64decode(body["d"]["result"]).decode().strip() == current_user()


async def test_agent_ignores_garbage_and_can_stay_silent() -> None:
    assert await make_agent().on_command(b"garbage") is None
    silent = make_agent(answer=False)
    assert await silent.on_command(orjson.dumps({"id": 7, "command": "sh"})) is None


# -- fleet layout and options --


def test_sns_and_gateway_share() -> None:
    assert device_sns("GW-", 3) == ["GW-0001", "GW-0002", "GW-0003"]
    assert device_sns("X", 12345)[-1] == "X12345"
    assert [gateway_count(10, s) for s in (0.0, 0.25, 0.5, 1.0)] == [0, 2, 5, 10]


def test_options_parse_into_a_config() -> None:
    config, level = parse_config(["--count", "3", "--dur", "0.5", "--allow", "date, id", "--gateways", "0.5",
                                  "--fail-first", "2", "--no-answer", "--duration", "4"])
    assert (config.count, config.interval, config.allow, config.gateways) == (3, 0.5, ("date", "id"), 0.5)
    assert (config.fail_first, config.answer, config.duration, level) == (2, False, 4.0, "INFO")
    defaults, _ = parse_config([])
    assert defaults == SimConfig()


@pytest.mark.parametrize("argv", [["--gateways", "1.5"], ["--drop-rate", "-0.1"], ["--count", "0"]])
def test_out_of_range_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_config(argv)
    assert exc.value.code == 2


def test_a_failure_rate_fails_exactly_that_share_of_devices_spread_evenly() -> None:
    from adapter_devtools.simulator.cli import parse_config
    from adapter_devtools.simulator.runner import build_agents, failing_device

    assert [i for i in range(20) if failing_device(i, 0.2)] == [4, 9, 14, 19]
    assert sum(failing_device(i, 0.2) for i in range(2000)) == 400
    assert not any(failing_device(i, 0.0) for i in range(100)) and all(failing_device(i, 1.0) for i in range(100))
    config, _ = parse_config(["--count", "10", "--failure-rate", "0.3"])
    assert [a.sn for a in build_agents(config) if a.desk.failing] == ["SIM0004", "SIM0007", "SIM0010"]
