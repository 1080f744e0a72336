"""Rollouts driven by real RQ burst workers on a real Redis (either layout): rate, ramp, abort, pause/resume/cancel.

Devices are planted as the ingest leaves them; a `Fleet` thread plays their answers by finishing each dispatched
command in Redis (state 2, or 3 for the devices told to fail), as lifecycle.lua would on their answer: this tests
the driver; tests/e2e/test_rollouts_e2e.py runs the whole path through the dev broker and simulated devices.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis
from rq import Queue

from adapter.commands.ids import parse_id
from adapter.commands.records import partition
from adapter.jobs import entry as jobs
from adapter.settings import Settings
from adapter.store.connections import rq_redis
from adapter.store.keys import Keys
from tests.conftest import ok
from tests.integration.test_devices_api import put_device
from tests.support.jobs import burst, work  # a burst worker: it returns once the rollout's driver chain has ended

BASE = "/iot/api/v1/remotectl/rollouts"
COMMAND = {"command": "sh", "body": {"shcmd": "uptime"}, "publishNow": False, "maxRetries": 1}


def devices(r: redis.Redis, keys: Keys, n: int, prefix: str = "RD") -> list[str]:
    sns = [f"{prefix}{i:05}" for i in range(n)]
    for sn in sns:
        put_device(r, keys, sn, online=True)
    return sns


def create(admin: httpx.Client, **spec: Any) -> dict[str, Any]:
    data: dict[str, Any] = ok(admin.post(BASE, json={"command": COMMAND, **spec}))
    return data


def progress(admin: httpx.Client, rid: int) -> dict[str, Any]:
    data: dict[str, Any] = ok(admin.get(BASE, params={"id": rid}))
    return data


def executions(admin: httpx.Client, rid: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    page = 1
    while True:
        data = admin.get(f"{BASE}/executions", params={"id": rid, "page": page, "limit": 1000}).json()["data"]
        out += data["list"]
        if len(out) >= data["total"]:
            return out
        page += 1


def per_minute(times: list[int]) -> float:
    span = times[-1] - times[0]
    return math.inf if span == 0 else (len(times) - 1) * 60_000 / span  # all in one ms: a driver catching up


class Fleet(threading.Thread):
    """Answers every dispatched command: fails the devices in `failing`, succeeds the others (unless `silent`);
    `on_round(rollout hash)` runs every round (the test's script: pause, cancel…)."""

    def __init__(self, r: redis.Redis, keys: Keys, rid: int, failing: frozenset[str] = frozenset(),
                 silent: bool = False, on_round: Callable[[dict[str, str]], None] | None = None) -> None:
        super().__init__(daemon=True)
        self.r, self.keys, self.rid, self.failing, self.silent = r, keys, rid, failing, silent
        self.on_round = on_round
        self.answered: set[str] = set()
        self.hold: set[str] = set()  # not answered while here
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.wait(0.01):
                if not self.silent:
                    self.answer()
                if self.on_round is not None:
                    self.on_round(self.r.hgetall(self.keys.rollout(self.rid)))
        except BaseException as exc:  # the test fails with it
            self.error = exc

    def answer(self) -> None:
        for sn, result in self.r.hgetall(self.keys.rollout_results(self.rid)).items():
            id_text, _, outcome = result.partition(" ")
            cid = parse_id(id_text)
            if outcome != "inFlight" or sn in self.answered or sn in self.hold or cid is None:
                continue
            key = self.keys.command(id_text, partition(self.keys, cid))
            if not self.r.exists(key):
                continue  # committed, not written yet
            fails = sn in self.failing
            self.r.hset(key, mapping={"state": "3" if fails else "2", "reason": "retries_exhausted" if fails else ""})
            self.answered.add(sn)


@contextmanager
def fleet(*args: Any, **kwargs: Any) -> Iterator[Fleet]:
    f = Fleet(*args, **kwargs)
    f.start()
    try:
        yield f
    finally:
        f.stop.set()
        f.join(10)
    assert f.error is None, f.error


def test_bad_rollouts_get_the_envelope(admin: httpx.Client) -> None:
    for body in ({}, {"command": COMMAND, "selector": {}, "rate": {"perMinute": 60}},
                 {"command": COMMAND, "selector": {"all": True}, "rate": {"perMinute": 0}},
                 {"command": {**COMMAND, "to": [{"sn": "A"}]}, "selector": {"all": True}, "rate": {"perMinute": 6}},
                 {"command": {"command": ""}, "selector": {"all": True}, "rate": {"perMinute": 6}},
                 {"command": COMMAND, "selector": {"all": True}, "rate": {"perMinute": 6, "ramp": {"start": 1}}},
                 {"command": COMMAND, "selector": {"version": "x"}, "rate": {"perMinute": 6}},
                 {"command": COMMAND, "selector": {"all": True}, "rate": {"perMinute": 6}, "abort": {}}):
        r = admin.post(BASE, json=body)
        assert r.status_code == 400 and r.json()["code"] == "invalid_params", (body, r.text)
    assert admin.get(BASE, params={"id": "x"}).status_code == 400
    assert admin.get(BASE, params={"id": 99}).json()["code"] == "not_found"
    assert admin.post(f"{BASE}/pause", params={"id": 99}).status_code == 404
    assert admin.get(f"{BASE}/executions", params={"id": 99}).status_code == 404


def test_a_dry_run_creates_nothing(admin: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    devices(redis_db, keys, 30)
    data = create(admin, selector={"snPrefix": "RD0001"}, rate={"perMinute": 60}, dryRun=True)
    assert data == {"dryRun": True, "matched": 10, "preview": [f"RD{i:05}" for i in range(10, 20)]}
    assert admin.get(BASE).json()["data"]["total"] == 0


def test_the_dispatch_rate_holds_within_ten_percent(admin: httpx.Client, settings: Settings,
                                                   redis_db: redis.Redis, keys: Keys) -> None:
    """2,000 devices at 600/min: the first 120 dispatches (12 s) keep the rate within ±10 %; then it is cancelled.
    (12 s, not 6: the driver saves up at most BURST_S of allowance, so a worker stalled by a loaded machine for
    longer loses dispatch time; over 12 s a stall of up to ~2 s still keeps within the bound.)"""
    devices(redis_db, keys, 2000)
    ro = create(admin, selector={"snPrefix": "RD"}, rate={"perMinute": 600}, maxInFlight=2000)
    assert ro["state"] == "queued" and ro["counts"]["matched"] == 2000

    def cancel_at_120(record: dict[str, str]) -> None:
        if int(record.get("dispatched") or 0) >= 121 and record.get("state") == "running":
            admin.delete(BASE, params={"id": ro["id"]})

    with fleet(redis_db, keys, ro["id"], on_round=cancel_at_120):
        work(settings)
    done = progress(admin, ro["id"])
    assert done["state"] == "cancelled" and done["counts"]["inFlight"] == 0
    times = sorted(e["dispatchTime"] for e in executions(admin, ro["id"]))[:120]
    assert 540 <= per_minute(times) <= 660, per_minute(times)
    assert done["counts"]["dispatched"] < 2000 and done["counts"]["succeeded"] + done["counts"]["cancelled"] \
        == done["counts"]["dispatched"]


def test_the_ramp_starts_slow_and_speeds_up_with_successes(admin: httpx.Client, settings: Settings,
                                                           redis_db: redis.Redis, keys: Keys) -> None:
    devices(redis_db, keys, 60)
    ro = create(admin, selector={"all": True}, rate={"perMinute": 6000, "ramp": {"start": 300, "factor": 4,
                                                                                "every": 20}})
    with fleet(redis_db, keys, ro["id"]):
        work(settings)
    done = progress(admin, ro["id"])
    assert done["state"] == "succeeded" and done["counts"]["succeeded"] == 60 == done["counts"]["dispatched"]
    times = sorted(e["dispatchTime"] for e in executions(admin, ro["id"]))
    assert 270 <= per_minute(times[:20]) <= 330, per_minute(times[:20])  # the start rate, while < 20 succeeded
    assert per_minute(times[40:]) > 2 * 330  # stepped up (1,200/min after 20 successes, 4,800 after 40)


def test_an_abort_fires_in_the_tick_that_crosses_the_ratio(admin: httpx.Client, settings: Settings,
                                                           redis_db: redis.Redis, keys: Keys) -> None:
    sns = devices(redis_db, keys, 300)
    failing = frozenset(sns[4::5])  # 20 %
    ro = create(admin, selector={"all": True}, rate={"perMinute": 6000}, maxInFlight=10,
                abort={"failureRatio": 0.15, "minExecuted": 30})
    with fleet(redis_db, keys, ro["id"], failing=failing):
        work(settings)
    done = progress(admin, ro["id"])
    assert done["state"] == "aborted" and "failureRatio" in done["abortReason"], done
    settled = sorted((e["finishTime"], e["outcome"]) for e in executions(admin, ro["id"])
                     if e["outcome"] in ("succeeded", "failed"))
    ok = failed = 0
    crossed_at = None
    for at in sorted({at for at, _ in settled}):
        ok += sum(1 for t, o in settled if t == at and o == "succeeded")
        failed += sum(1 for t, o in settled if t == at and o == "failed")
        if ok + failed >= 30 and failed / (ok + failed) >= 0.15:
            crossed_at = at
            break
    assert crossed_at == done["finishTime"]  # the commit that settled the crossing execution aborted
    assert max(e["dispatchTime"] for e in executions(admin, ro["id"])) < done["finishTime"]
    assert done["counts"]["dispatched"] < 300 and done["counts"]["inFlight"] == 0


def test_pause_resume_and_cancel(admin: httpx.Client, settings: Settings, redis_db: redis.Redis,
                                 keys: Keys) -> None:
    devices(redis_db, keys, 200)
    ro = create(admin, selector={"all": True}, rate={"perMinute": 1200}, maxInFlight=200)
    rid = ro["id"]
    script: dict[str, Any] = {"step": "run"}

    def steer(record: dict[str, str]) -> None:
        dispatched, tick = int(record.get("dispatched") or 0), int(record.get("tickAt") or 0)
        if script["step"] == "run" and dispatched >= 10:
            assert admin.post(f"{BASE}/pause", params={"id": rid}).json()["data"]["state"] == "paused"
            script.update(step="paused", at=tick, count=int(redis_db.hget(keys.rollout(rid), "dispatched")))
        elif script["step"] == "paused" and tick > script["at"] + 1000:  # a second of ticks while paused
            assert dispatched == script["count"]
            assert admin.post(f"{BASE}/pause", params={"id": rid}).status_code == 409
            assert admin.post(f"{BASE}/resume", params={"id": rid}).json()["data"]["state"] == "running"
            script["step"] = "resumed"
        elif script["step"] == "resumed" and dispatched >= script["count"] + 10:
            assert admin.delete(BASE, params={"id": rid}).json()["data"]["state"] == "cancelled"
            script["step"] = "cancelled"

    with fleet(redis_db, keys, rid, silent=True, on_round=steer):
        work(settings)
    done = progress(admin, rid)
    assert script["step"] == "cancelled" and done["state"] == "cancelled"
    runs = executions(admin, rid)
    assert len(runs) == done["counts"]["dispatched"] == done["counts"]["cancelled"] < 200
    for e in runs[:3]:
        command = admin.get("/iot/api/v1/remotectl/commands", params={"id": e["idStr"]}).json()["data"]
        assert (command["state"], command["reason"], command["sn"]) == (3, "canceled", e["sn"])
    assert admin.delete(BASE, params={"id": rid}).status_code == 409


@pytest.mark.parametrize("selector", [{"sns": ["RD00003", "RD00001", "NOPE"]}, {"tag": "blue", "online": True}])
def test_a_rollout_reaches_exactly_what_its_selector_matches(admin: httpx.Client, settings: Settings,
                                                             redis_db: redis.Redis, keys: Keys,
                                                             selector: dict[str, Any]) -> None:
    devices(redis_db, keys, 10)
    put_device(redis_db, keys, "RD00100", online=False)
    admin.put("/iot/api/v1/monitor/devices/tags", json={"sns": ["RD00001", "RD00003", "RD00100"], "tags": ["blue"]})
    ro = create(admin, selector=selector, rate={"perMinute": 6000})
    with fleet(redis_db, keys, ro["id"]):
        work(settings)
    assert sorted(e["sn"] for e in executions(admin, ro["id"])) == ["RD00001", "RD00003"]
    assert progress(admin, ro["id"])["state"] == "succeeded"


def test_devices_that_come_to_match_join_while_it_runs(admin: httpx.Client, settings: Settings,
                                                       redis_db: redis.Redis, keys: Keys) -> None:
    devices(redis_db, keys, 5)
    put_device(redis_db, keys, "RD00009", online=False)
    ro = create(admin, selector={"online": True}, rate={"perMinute": 6000}, maxInFlight=10)
    late = {"done": False}

    def come_online(record: dict[str, str]) -> None:
        """RD00000 stays in flight (the rollout runs on) until RD00009, online since, has joined."""
        if not late["done"] and int(record.get("dispatched") or 0) >= 5:
            put_device(redis_db, keys, "RD00009", online=True)
            redis_db.zrem(keys.devices_offline(keys.shard("RD00009")), "RD00009")
            late["done"] = True
        if redis_db.hexists(keys.rollout_results(ro["id"]), "RD00009"):
            f.hold.discard("RD00000")

    with fleet(redis_db, keys, ro["id"], on_round=come_online) as f:
        f.hold.add("RD00000")
        work(settings)
    assert sorted(e["sn"] for e in executions(admin, ro["id"])) == [*(f"RD{i:05}" for i in range(5)), "RD00009"]
    assert progress(admin, ro["id"])["state"] == "succeeded"


def test_a_rollout_listing_and_progress_read(admin: httpx.Client, settings: Settings, redis_db: redis.Redis,
                                             keys: Keys) -> None:
    devices(redis_db, keys, 3)
    first = create(admin, selector={"all": True}, rate={"perMinute": 6000}, name="one")
    with fleet(redis_db, keys, first["id"]):
        work(settings)
    page = admin.get(BASE, params={"limit": 10}).json()["data"]
    assert page["total"] == 1 and page["list"][0]["name"] == "one"
    done = page["list"][0]
    assert done["counts"] == {"dispatched": 3, "succeeded": 3, "failed": 0, "timedOut": 0, "cancelled": 0,
                              "inFlight": 0, "matched": 3}
    assert done["spec"]["command"]["command"] == "sh" and done["etaSeconds"] is None
    assert not redis_db.sismember(keys.rollouts_active(), str(done["id"]))
    assert redis_db.get(keys.rollout_driver(done["id"])) is None


def test_a_paused_rollout_with_nothing_in_flight_frees_its_worker_until_resumed(
        admin: httpx.Client, settings: Settings, redis_db: redis.Redis, keys: Keys) -> None:
    devices(redis_db, keys, 40)
    rid = create(admin, selector={"all": True}, rate={"perMinute": 1200})["id"]

    def pause_at_10(record: dict[str, str]) -> None:
        if int(record.get("dispatched") or 0) >= 10 and record.get("state") == "running":
            admin.post(f"{BASE}/pause", params={"id": rid})

    with fleet(redis_db, keys, rid, on_round=pause_at_10):
        work(settings)  # returns: the driver stopped once the paused rollout had nothing in flight
    paused = progress(admin, rid)
    assert paused["state"] == "paused" and paused["counts"]["inFlight"] == 0 and paused["counts"]["dispatched"] < 40
    assert redis_db.get(keys.rollout_driver(rid)) is None and redis_db.sismember(keys.rollouts_active(), str(rid))
    assert admin.post(f"{BASE}/resume", params={"id": rid}).json()["data"]["state"] == "running"
    assert redis_db.get(keys.rollout_driver(rid)) is not None  # the resume started a driver
    with fleet(redis_db, keys, rid):
        work(settings)
    done = progress(admin, rid)
    assert done["state"] == "succeeded" and done["counts"]["succeeded"] == 40


def test_the_retention_job_deletes_rollouts_that_ended_long_ago(admin: httpx.Client, settings: Settings,
                                                               redis_db: redis.Redis, keys: Keys) -> None:
    """An ended rollout goes with all of its keys ADAPTER_ROLLOUT_RETENTION_DAYS after it ended; a recent one stays,
    and so does an active one whatever its hash says."""
    ended = []
    for prefix in ("RA", "RB"):  # devices of their own: one rollout at a time
        devices(redis_db, keys, 10, prefix)
        ro = create(admin, selector={"snPrefix": prefix}, rate={"perMinute": 6000})
        with fleet(redis_db, keys, ro["id"]):
            work(settings)
        assert progress(admin, ro["id"])["state"] == "succeeded"
        ended.append(ro)
    old, recent = ended
    devices(redis_db, keys, 10, "RC")
    paused = create(admin, selector={"snPrefix": "RC"}, rate={"perMinute": 60})
    assert admin.post(f"{BASE}/pause", params={"id": paused["id"]}).json()["data"]["state"] == "paused"
    work(settings)
    long_ago = int(time.time() * 1000) - (settings.rollout_retention_days + 1) * 86_400_000
    for rid in (old["id"], paused["id"]):  # the paused one only as a test would: its state decides
        redis_db.hset(keys.rollout(rid), "finished", long_ago)
    own = [keys.rollout(old["id"]), keys.rollout_execs(old["id"]), keys.rollout_results(old["id"]),
           keys.rollout_inflight(old["id"]), keys.rollout_sns(old["id"]), keys.rollout_driver(old["id"])]
    assert redis_db.exists(*own) >= 3

    jobs.configure(settings)
    queue = Queue(keys.queue("default"), connection=rq_redis(settings))
    job = queue.enqueue("adapter.jobs.entry.retention")
    burst(queue)
    assert job.get_status(refresh=True) == "finished" and job.return_value()["rollouts"] == 1
    assert admin.get(BASE, params={"id": old["id"]}).status_code == 404
    assert sum(redis_db.exists(k) for k in own) == 0  # one at a time: on a cluster they share a slot anyway
    assert progress(admin, recent["id"])["state"] == "succeeded" and progress(admin, paused["id"])["state"] == "paused"
    listed = ok(admin.get(BASE, params={"page": 1, "limit": 10}))
    assert sorted(r["id"] for r in listed["list"]) == sorted([recent["id"], paused["id"]]) and listed["total"] == 2
