"""The chaos suite's other pure parts: what the receiver reads from a delivery, CLUSTER NODES, the events a
device sends, the report's log summary and table."""

from __future__ import annotations

from pathlib import Path

import orjson

from adapter_devtools.chaos import report
from adapter_devtools.chaos.cluster import parse_nodes
from adapter_devtools.chaos.counting import Figures, Goals, Stuck
from adapter_devtools.chaos.faults import CLUSTER, SINGLE
from adapter_devtools.chaos.load import FIRST_VERSION, Device
from adapter_devtools.chaos.receiver import CALLBACK_PATH, ROUTE_PATH, parse
from adapter_devtools.chaos.suite import Config


def test_the_receiver_reads_device_and_seq_of_routes_and_callbacks() -> None:
    route = orjson.dumps({"topic": "t", "payload": '{"seq": 7, "sn": "D1"}', "clientid": "D1", "routeId": 3})
    a = parse(ROUTE_PATH, "m:ABC:route:3", route, 1.5)
    assert (a.delivery_id, a.target, a.device, a.seq, a.at) == ("m:ABC:route:3", "route:3", "D1", 7, 1.5)
    callback = orjson.dumps({"type": "device", "sn": "D1", "online": False, "version": 9})
    b = parse(CALLBACK_PATH, "d:D1:9:callback:2", callback, 2.0)
    assert (b.target, b.device, b.seq) == ("callback:2", "D1", 9)


def test_a_device_counts_versions_and_message_seqs_and_keeps_connections_apart() -> None:
    d = Device("CHAOS00001", 1)
    assert d.subscribe()["topic"] == "dma/cmd/CHAOS00001" and d.version == FIRST_VERSION
    msg_id, body = d.message()
    assert body["event"] == "message.publish" and body["id"] == msg_id and len(msg_id) == 32
    assert orjson.loads(body["payload"])["seq"] == 1 and body["topic"] == "dma/report/CHAOS00001/heartbeat"
    first = d.conn.connected_at
    gone = d.disconnect()
    assert gone["event"] == "client.disconnected" and gone["connected_at"] == first
    assert gone["disconnected_at"] > first and d.version == FIRST_VERSION + 1
    back = d.connect()
    assert back["event"] == "client.connected" and back["connected_at"] > gone["disconnected_at"] - 1
    assert back["connected_at"] > first and d.version == FIRST_VERSION + 2


def test_cluster_nodes_are_parsed_with_their_slots() -> None:
    text = ("a1 127.0.0.1:7601@17601 myself,master - 0 0 1 connected 0-5460\n"
            "b2 127.0.0.1:7602@17602 master - 0 0 2 connected 5461-10922 [10923->-c3]\n"
            "c3 127.0.0.1:7603@17603 master,fail - 0 0 3 disconnected\n"
            "d4 127.0.0.1:7604@17604 slave a1 0 0 1 connected\n")
    nodes = {n.id: n for n in parse_nodes(text)}
    assert (nodes["a1"].port, nodes["a1"].slots, nodes["a1"].primary) == (7601, 5461, True)
    assert nodes["b2"].slots == 5462 and nodes["c3"].failing and not nodes["c3"].slots
    assert nodes["d4"].primary_of == "a1" and not nodes["d4"].primary


def test_notable_log_lines_are_counted_by_kind(tmp_path: Path) -> None:
    log = tmp_path / "worker-1.log"
    log.write_text("2025-01-02 03:04:05,678 adapter.delivery.pump WARNING delivery pump: partition 2: boom\n"
                   "2025-01-02 03:04:06,001 adapter.delivery.pump WARNING delivery pump: partition 3: boom\n"
                   "2025-01-02 03:04:06,002 adapter.worker INFO fine\n"
                   "redis.exceptions.ResponseError: UNBLOCKED\n")
    assert report.notable_lines([log, tmp_path / "missing.log"]) == [
        (2, "adapter.delivery.pump WARNING delivery pump: partition #: boom"),
        (1, "redis.exceptions.ResponseError: UNBLOCKED")]


def test_the_text_report_says_which_goals_were_missed() -> None:
    result = report.Result(
        layout="single", commit="abc1234", settings={"devices": 2, "rate": 4.0}, rows=[
            Figures("pause", accepted=10, lost=1, gap=0.5, delay=0.5, answers=4, unavailable=1),
            Figures("all", accepted=10, lost=1)],
        stuck=Stuck(held={"route:1": 0}), goals=Goals(cap=48), exits=[], retired=0, malformed=0, seconds=12.0)
    out = report.text(result)
    assert "pause" in out and "25.0" in out and "MISSED pause: 1 lost" in out and out.endswith("goals NOT met")
    assert not result.passed and result.to_json()["misses"] == {"pause": ["1 lost"], "all": ["1 lost"]}


def test_the_cluster_runs_wait_for_a_replica() -> None:
    """The cluster layout has a replica per primary and runs the ingest with ADAPTER_INGEST_WAIT_REPLICAS=1 (without,
    primary-freeze loses what the waking primary answers before its demotion: docs/reliability.md); one Redis has
    no replica and must not ask for one; --env still decides."""
    assert Config(layout=CLUSTER).adapter_overrides()["ADAPTER_INGEST_WAIT_REPLICAS"] == "1"
    assert "ADAPTER_INGEST_WAIT_REPLICAS" not in Config(layout=SINGLE).adapter_overrides()
    off = Config(layout=CLUSTER, extra_env={"ADAPTER_INGEST_WAIT_REPLICAS": "0"})
    assert off.adapter_overrides()["ADAPTER_INGEST_WAIT_REPLICAS"] == "0"
