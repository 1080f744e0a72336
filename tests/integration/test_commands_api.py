"""The remote-control endpoints on a live app (real Redis), with the ingest feeding them EMQX events:
the seed's shapes, clear 400s, ids as numbers and strings, queries, answers, deliveries and cancel."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from adapter.api import commands as commands_api
from adapter.app import create_app
from adapter.commands.calls import COMMANDS, mode_call
from adapter.commands.ids import partition_of
from adapter.http.openapi import document
from adapter.settings import Settings
from adapter.store.keys import Keys
from tests.conftest import (
    ADMIN_PASSWORD,
    INGEST_TOKEN,
    flush_store,
    keys_for,
    login,
    metric_fields,
    ok,
    primaries,
    store_client,
    store_env,
)
from tests.support.emqx import published, sample, subscribed
from tests.support.servers import serve

URL = "/iot/api/v1/remotectl/commands"
SEED = {"from": "iot_web_console", "to": [{"sn": "8CFCA0107D1B"}, {"sn": "6FSDA0108789"}], "command": "sh",
        "method": "", "body": {"shcmd": "whoami"}, "publishNow": True, "maxRetries": 3, "expires": 38400,
        "detached": True}
INGEST = {"Authorization": f"Bearer {INGEST_TOKEN}"}


def app_with_commands(settings: Settings) -> Any:
    app = create_app(settings)
    app.router.routes[0:0] = [ep.route() for ep in commands_api.ENDPOINTS]
    return app


@pytest.fixture
def key_prefix(module_prefix: str) -> str:
    """The module's server's: the shared `settings` and `keys` follow it."""
    return module_prefix


@pytest.fixture(scope="module")
def server(module_prefix: str) -> Iterator[tuple[str, str, redis.Redis]]:
    """One app and one login for the module (logins cost an argon2id hash); tests clear the commands."""
    prefix = module_prefix
    r = store_client(decode_responses=True)
    flush_store(r, prefix)
    settings = Settings.from_env({**store_env(prefix), "ADAPTER_ADMIN_PASSWORD": ADMIN_PASSWORD,
                                  "ADAPTER_INGEST_TOKEN": INGEST_TOKEN, "ADAPTER_COMMAND_MAX_TARGETS": "50",
                                  "ADAPTER_EMQX_API_URL": "http://127.0.0.1:9/api/v5"}, dotenv=None)
    with serve(app_with_commands(settings)) as url, httpx.Client(base_url=url, timeout=10) as c:
        yield url, login(c), r
    flush_store(r, prefix)
    r.close()


@pytest.fixture
def redis_db(server: tuple[str, str, redis.Redis], module_prefix: str) -> redis.Redis:
    """The store emptied of everything but the login (users and tokens), per test."""
    r = server[2]
    mine = keys_for(module_prefix)
    login_keys = (mine.users(), mine.user(""), mine.token(""), mine.user_tokens(""))

    for node in primaries(r):  # one at a time: on the cluster they are in many slots
        for key in [k for k in node.scan_iter(match=f"{module_prefix}*", count=1000)
                    if not str(k).startswith(login_keys)]:

            r.delete(key)
    return r


@pytest.fixture
def api(server: tuple[str, str, redis.Redis], redis_db: redis.Redis) -> Iterator[httpx.Client]:
    url, token, _ = server
    with httpx.Client(base_url=url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


def err(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert (body["status"], body["code"]) == ("err", code)
    return str(body["msg"])


def event(c: httpx.Client, body: dict[str, Any]) -> None:
    r = c.post("/emqx/events", content=json.dumps(body), headers=INGEST)
    assert r.status_code == 200, r.text


def answer(cid: int | str, sn: str, status: str = "ok", result: str = "cm9vdA==") -> dict[str, Any]:
    return {"id": cid, "sn": sn, "command": "sh", "from": "iot_web_console",
            "d": {"exestatus": status, "msg": "", "result": result, "status": status}, "status": status,
            "time": 18423}


def sent(keys: Keys, r: redis.Redis, cid: str) -> None:
    """What a runner does: claim and record a successful send."""
    r.script_load(COMMANDS.script)
    p = partition_of(int(cid), keys.cluster_partitions)  # the partition its id carries (0 on one Redis)
    for c in (mode_call(keys, p, "claim", 100, 10_000),
              mode_call(keys, p, "record", 30_000, "send-1", cid, "sent", 0)):
        r.evalsha(COMMANDS.sha, len(c.keys), *c.keys, *c.args)


def test_create_answers_the_seeds_shape_with_exact_ids(api: httpx.Client, keys: Keys) -> None:
    r = api.post(URL, json=SEED)
    to = ok(r)["to"]
    assert [t["sn"] for t in to] == ["8CFCA0107D1B", "6FSDA0108789"]
    assert all(set(t) == {"id", "idStr", "sn"} and str(t["id"]) == t["idStr"] for t in to)
    if keys.cluster:  # an id carries its device's partition
        assert [partition_of(t["id"], keys.cluster_partitions) for t in to] == [keys.shard(t["sn"]) for t in to]
    else:  # the day's sequence, from 1
        assert int(to[1]["idStr"]) == int(to[0]["idStr"]) + 1
        assert re.fullmatch(r"\d{8}0{9}[12]", to[0]["idStr"])
    assert f'"id":{to[0]["idStr"]},' in r.text  # a JSON integer, not a rounded double


@pytest.mark.parametrize("change, status, text", [
    ({"to": []}, 400, "to:"), ({"to": [{"sn": f"S{i}"} for i in range(51)]}, 400, "at most 50"),
    ({"method": "delete"}, 400, "method"), ({"maxRetries": -1}, 400, "maxRetries"),
    ({"expires": -1}, 400, "expires"), ({"body": {"shcmd": "x" * 70_000}}, 400, "body: must be at most"),
    ({"to": [{"sn": "A"}, {"sn": "A"}]}, 400, "listed twice"), ({"command": 5}, 400, "command"),
])
def test_clear_400s(api: httpx.Client, change: dict[str, Any], status: int, text: str) -> None:
    assert text in err(api.post(URL, json={**SEED, **change}), status, "invalid_params")


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("levels", [64, 254, 300])
def test_a_body_nested_too_deep_is_a_400_not_a_500(api: httpx.Client, levels: int) -> None:
    """A command body the serializer refuses (past 254 levels), or one stored and then refused when it is shown
    (253 + the envelope), is refused where the request is parsed: the request nests one level more."""
    msg = err(api.post(URL, json={**SEED, "body": nested(levels)}), 400, "invalid_params")
    assert msg == "body: nested deeper than 64 levels"
    assert ok(api.get(URL))["total"] == 0


def test_a_body_at_the_depth_limit_is_created_and_shown(api: httpx.Client) -> None:
    [target, _] = ok(api.post(URL, json={**SEED, "body": nested(63)}))["to"]
    assert ok(api.get(URL, params={"id": target["idStr"]}))["d"] == nested(63)


def test_an_oversized_request_is_413_and_a_viewer_cannot_create(api: httpx.Client) -> None:
    huge = {**SEED, "body": {"blob": "x" * (1024 * 1024 + 1)}}
    err(api.post(URL, json=huge), 413, "too_large")
    err(httpx.post(f"{api.base_url}{URL}", json=SEED), 401, "unauthorized")


def test_limits_say_what_a_command_gets_when_it_gives_nothing(api: httpx.Client) -> None:
    """What the console shows in its form: the expiry a command gets without one (there is no "never")."""
    limits = ok(api.get("/iot/api/v1/remotectl/limits"))
    assert limits == {"defaultExpires": 86400, "maxExpires": 2592000, "defaultRetries": 3, "maxRetries": 100,
                      "maxTargets": 50, "bodyMaxBytes": 65536}
    [made] = ok(api.post(URL, json={k: v for k, v in SEED.items() if k not in ("expires", "maxRetries")} | {
        "to": [{"sn": "SN1"}]}))["to"]
    stored = ok(api.get(URL, params={"id": made["idStr"]}))
    assert (stored["expires"], stored["maxRetries"]) == (limits["defaultExpires"], limits["defaultRetries"])
    assert "expires" in err(api.post(URL, json={**SEED, "expires": limits["maxExpires"] + 1}), 400, "invalid_params")


def test_queries_by_id_number_or_string_and_pages(api: httpx.Client, keys: Keys) -> None:
    first = ok(api.post(URL, json=SEED))["to"]
    second = ok(api.post(URL, json={**SEED, "from": "script", "to": [{"sn": "8CFCA0107D1B"}]}))["to"]
    one = ok(api.get(URL, params={"id": first[0]["idStr"], "page": 9, "limit": 1}))
    assert set(one) == {"command", "createTime", "d", "deliverTime", "detached", "expires", "failedTime",
                        "finishTime", "from", "id", "idStr", "maxRetries", "method", "publishNow",
                        "publishTime", "reason", "sn", "state", "tryTimes"}
    assert (one["id"], one["sn"], one["state"], one["d"], one["detached"], one["expires"]) == \
        (first[0]["id"], "8CFCA0107D1B", 0, {"shcmd": "whoami"}, 1, 38400)
    assert ok(api.get(f"{URL}?id={first[0]['id']}"))["idStr"] == first[0]["idStr"]
    assert "id" in err(api.get(URL, params={"id": "12"}), 400, "invalid_params")
    err(api.get(URL, params={"id": "201811260000000009"}), 404, "not_found")
    page = ok(api.get(URL, params={"limit": 2}))
    assert (page["total"], page["count"], page["page"], page["limit"]) == (3, 2, 1, 2)
    newest = sorted((t["id"] for t in (*first, *second)), reverse=True)  # by id (on one Redis: the order made)
    assert [i["id"] for i in page["list"]] == newest[:2]
    if not keys.cluster:  # one Redis: the day's sequence is the order they were made in
        assert newest[:2] == [second[0]["id"], first[1]["id"]]
    assert ok(api.get(URL, params={"from": "script"}))["total"] == 1
    assert ok(api.get(URL, params={"sn": "8CFCA0107D1B"}))["total"] == 2
    assert ok(api.get(URL, params={"from": "iot_web_console", "sn": "6FSDA0108789"}))["total"] == 1


def test_an_answer_through_the_ingest(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    [target] = ok(api.post(URL, json={**SEED, "to": [{"sn": "SN1"}]}))["to"]
    cid = target["idStr"]
    err(api.get(f"{URL}/responses", params={"id": cid}), 404, "not_found")
    sent(keys, redis_db, cid)
    event(api, published("SN1", "dma/resp/cmd", answer(cid, "SN1"), at=1543818336000, msg_id="B" * 32))
    cmd = ok(api.get(URL, params={"id": cid}))
    assert (cmd["state"], cmd["tryTimes"], cmd["reason"]) == (2, 1, "") and cmd["finishTime"] > 0
    resp = ok(api.get(f"{URL}/responses", params={"id": target["id"], "from": "iot_web_console"}))
    assert resp == {**answer(target["id"], "SN1"), "idStr": cid, "revtime": 1543818336}
    err(api.get(f"{URL}/responses", params={"id": cid, "from": "someone_else"}), 404, "not_found")


def test_a_forged_answer_is_ignored_and_counted(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    [target] = ok(api.post(URL, json={**SEED, "to": [{"sn": "SN1"}]}))["to"]
    cid = target["idStr"]
    sent(keys, redis_db, cid)
    event(api, published("INTRUDER", "dma/resp/cmd", answer(cid, "SN1"), msg_id="C" * 32))
    event(api, published("INTRUDER", "dma/resp/cmd", answer(cid, "INTRUDER"), msg_id="D" * 32))
    assert ok(api.get(URL, params={"id": cid}))["state"] == 1
    err(api.get(f"{URL}/responses", params={"id": cid}), 404, "not_found")
    # on the cluster the answer is looked up in the publisher's partition, where no such command is
    reason = "unknown" if keys.cluster else "foreign_client"
    assert metric_fields(redis_db, keys)[f'commands_responses_ignored_total{{reason="{reason}"}}'] == 1


def test_subscribing_sends_a_waiting_command_and_acked_records_the_delivery(api: httpx.Client, redis_db: redis.Redis,
                                                                            keys: Keys) -> None:
    [target] = ok(api.post(URL, json={**SEED, "publishNow": False, "to": [{"sn": "SN1"}]}))["to"]
    cid = target["idStr"]
    assert redis_db.zscore(keys.commands_due(keys.shard("SN1")), cid) is None
    event(api, subscribed("SN1"))
    assert redis_db.zscore(keys.commands_due(keys.shard("SN1")), cid) is not None
    payload = json.dumps({"id": target["id"], "command": "sh"})
    event(api, sample("message_acked", clientid="SN1", username="SN1", topic="dma/cmd/SN1", payload=payload))
    assert ok(api.get(URL, params={"id": cid}))["deliverTime"] > 0


def test_cancel(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    body = {**SEED, "publishNow": False, "to": [{"sn": "A"}, {"sn": "B"}]}
    [waiting, done] = ok(api.post(URL, json=body))["to"]
    canceled = ok(api.delete(URL, params={"id": waiting["idStr"]}))
    assert (canceled["state"], canceled["reason"], canceled["idStr"]) == (3, "canceled", waiting["idStr"])
    assert "finished" in err(api.delete(URL, params={"id": waiting["id"]}), 409, "conflict")
    event(api, subscribed("B"))
    sent(keys, redis_db, done["idStr"])
    event(api, published("B", "dma/resp/cmd", answer(done["id"], "B"), msg_id="E" * 32))
    err(api.delete(URL, params={"id": done["idStr"]}), 409, "conflict")
    err(api.delete(URL, params={"id": "201811260000000009"}), 404, "not_found")
    err(api.delete(URL), 400, "invalid_params")


schema = schemathesis.openapi.from_dict(document(commands_api.ENDPOINTS))


@schema.parametrize()
@hypothesis_settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_endpoints_conform_to_their_document(case: schemathesis.Case,
                                                 server: tuple[str, str, redis.Redis]) -> None:
    url, token, _ = server
    case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {token}"},
                           checks=[not_a_server_error, status_code_conformance, response_schema_conformance])


@pytest.mark.parametrize("raw", ["abc", "12", "2018112600000000x1", "201813260000000001", "-1", "1e17", ""])
def test_an_id_that_is_no_command_id_is_a_400_on_every_endpoint(api: httpx.Client, raw: str) -> None:
    for r in (api.get(URL, params={"id": raw}), api.get(f"{URL}/responses", params={"id": raw}),
              api.delete(URL, params={"id": raw})):
        if raw == "" and r.request.method == "GET" and r.request.url.path == URL:
            continue  # an empty id is no id: a page
        assert "id" in err(r, 400, "invalid_params")


def test_a_stored_record_with_a_bad_id_is_left_out_of_a_page(api: httpx.Client, redis_db: redis.Redis,
                                                             keys: Keys) -> None:
    ok(api.post(URL, json=SEED))
    redis_db.zadd(keys.commands(0), {"junk": 2**52})
    redis_db.hset(keys.command("junk", 0), mapping={"id": "junk", "sn": "X", "state": "0"})
    page = ok(api.get(URL, params={"limit": 10}))
    assert page["count"] == 2 and all(c["sn"] != "X" for c in page["list"])
