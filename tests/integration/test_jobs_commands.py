"""Bulk command creation as an RQ job with progress (docs/commands.md "Large requests"): the seed's answer
at once, the records written by a real RQ burst worker, progress through GET /iot/api/v1/jobs."""

from __future__ import annotations

import httpx
import pytest
import redis
from rq import Queue

from adapter.commands import bulk as command_bulk
from adapter.commands.ids import id_str
from adapter.commands.records import CREATE_CHUNK
from adapter.commands.rules import Limits, parse_request
from adapter.jobs import shutdown
from adapter.settings import Settings
from adapter.store.connections import rq_redis, sync_redis
from adapter.store.keys import Keys
from tests.support.jobs import work

K = Keys("iot")
BASE = "/iot/api/v1/remotectl/commands"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(command_job_threshold=5)


def create(admin: httpx.Client, n: int) -> dict:
    r = admin.post(BASE, json={"to": [{"sn": f"BULK{i:05}"} for i in range(n)], "command": "sh",
                               "body": {"shcmd": "uptime"}, "publishNow": False})
    assert r.status_code == 200, r.text
    data: dict = r.json()["data"]
    return data


def progress(admin: httpx.Client, job: str) -> dict:
    r = admin.get("/iot/api/v1/jobs", params={"id": job})
    assert r.status_code == 200, r.text
    data: dict = r.json()["data"]
    return data


def test_a_large_request_answers_the_ids_and_a_job_writes_them(admin: httpx.Client, settings: Settings,
                                                                redis_db: redis.Redis) -> None:
    data = create(admin, 2500)
    to = data["to"]
    assert [t["sn"] for t in to] == [f"BULK{i:05}" for i in range(2500)]
    assert [t["idStr"] for t in to] == [id_str(t["id"]) for t in to]
    assert len({t["id"] for t in to}) == 2500
    before = progress(admin, data["job"])
    assert (before["state"], before["done"], before["total"], before["kind"]) == ("queued", 0, 2500, "commands")
    assert admin.get(BASE, params={"id": to[0]["idStr"]}).status_code == 404  # not written yet
    assert data["job"] in Queue(Keys.of(settings).queue("default"), connection=rq_redis(settings)).job_ids

    work(settings)

    after = progress(admin, data["job"])
    assert (after["state"], after["done"], after["total"]) == ("finished", 2500, 2500)
    one = admin.get(BASE, params={"id": to[-1]["idStr"]}).json()["data"]
    assert (one["sn"], one["state"], one["command"]) == ("BULK02499", 0, "sh")
    assert admin.get(BASE, params={"limit": 1}).json()["data"]["total"] == 2500


def test_a_small_request_stays_synchronous(admin: httpx.Client) -> None:
    data = create(admin, 5)
    assert set(data) == {"to"}
    got = admin.get(BASE, params={"id": data["to"][0]["idStr"]})
    assert got.status_code == 200 and got.json()["data"]["sn"] == "BULK00000"


@pytest.mark.single_redis  # ids of partition 0; on the cluster: test_cluster_commands.py, the bulk job per partition
def test_a_retried_job_goes_on_from_the_first_chunk_not_written(settings: Settings,
                                                                redis_db: redis.Redis) -> None:
    req = parse_request({"to": [{"sn": f"R{i}"} for i in range(2100)], "command": "sh"}, Limits.of(settings))
    ids = [202601010000000001 + i for i in range(2100)]
    jid = command_bulk.job_id(K, ids[0])
    redis_db.hset(K.job_progress(jid), mapping={"state": "started", "done": 1000, "total": 2100})
    conn = sync_redis(settings)
    assert command_bulk.write(conn, K, jid, req, ids, 3600) == 1100
    assert not redis_db.exists(K.command(id_str(ids[999]), 0))  # written by the first try: not rewritten
    assert redis_db.hget(K.command(id_str(ids[1000]), 0), "sn") == "R1000"
    assert redis_db.hmget(K.job_progress(jid), "state", "done") == ["finished", "2100"]


@pytest.mark.single_redis  # ids of partition 0
def test_a_job_stops_between_two_chunks_and_its_retry_goes_on(settings: Settings, redis_db: redis.Redis) -> None:
    """The worker stops after the first chunk: the job raises Stopped there (RQ retries it), and the retry writes
    the rest, not the first chunk again."""
    req = parse_request({"to": [{"sn": f"S{i}"} for i in range(2100)], "command": "sh"}, Limits.of(settings))
    ids = [202601010000000001 + i for i in range(2100)]
    jid = command_bulk.job_id(K, ids[0])
    conn = sync_redis(settings)
    asked = []

    def stopping() -> bool:
        asked.append(1)
        return len(asked) > 1

    with pytest.raises(shutdown.Stopped):
        command_bulk.write(conn, K, jid, req, ids, 3600, stopping=stopping)
    assert redis_db.hget(K.job_progress(jid), "done") == str(CREATE_CHUNK)
    assert redis_db.hget(K.command(id_str(ids[CREATE_CHUNK - 1]), 0), "sn") == f"S{CREATE_CHUNK - 1}"
    assert not redis_db.exists(K.command(id_str(ids[CREATE_CHUNK]), 0))
    assert command_bulk.write(conn, K, jid, req, ids, 3600) == 2100 - CREATE_CHUNK
    assert redis_db.hmget(K.job_progress(jid), "state", "done") == ["finished", "2100"]


def test_an_unknown_job_is_404_and_a_missing_id_400(admin: httpx.Client) -> None:
    r = admin.get("/iot/api/v1/jobs", params={"id": "iot-commands-1"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = admin.get("/iot/api/v1/jobs")
    assert r.status_code == 400 and r.json()["code"] == "invalid_params"
