"""The dev broker's events, end to end: real paho/raw MQTT clients in, real HTTP POSTs out."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Callable

import httpx

from tests.devtools.integration.devbroker.harness import (
    INGEST_TOKEN,
    Device,
    Receiver,
    RunningBroker,
    closed_by_peer,
    raw_client,
    subscribe_packet,
    wait_for,
)


def events_of(receiver: Receiver, clientid: str) -> list[str]:
    return [b["event"] for b in receiver.events(clientid=clientid)]


def test_session_events_arrive_in_order_with_the_ingest_token(
        broker: RunningBroker, receiver: Receiver, devices: Callable[..., Device]) -> None:
    device = devices("dev-order")
    device.subscribe("dma/cmd/dev-order", qos=1)
    device.publish("dma/report/dev-order/heartbeat", b'{"sn":"dev-order"}', qos=1)
    device.client.unsubscribe("dma/cmd/dev-order")
    receiver.wait("session.unsubscribed", "dev-order")
    device.close()
    [gone] = receiver.wait("client.disconnected", "dev-order")

    assert events_of(receiver, "dev-order") == ["client.connected", "session.subscribed", "message.publish",
                                                "session.unsubscribed", "client.disconnected"]
    assert gone["reason"] == "normal"
    [came] = receiver.events("client.connected", "dev-order")
    assert gone["connected_at"] == came["connected_at"] <= gone["disconnected_at"]
    headers = receiver.posted[0].headers
    assert headers["authorization"] == f"Bearer {INGEST_TOKEN}"
    assert headers["content-type"] == "application/json"


def test_socket_closed_without_disconnect_is_tcp_closed(broker: RunningBroker, receiver: Receiver) -> None:
    with raw_client(broker.mqtt_port, "dev-tcp"):
        receiver.wait("client.connected", "dev-tcp")
    [gone] = receiver.wait("client.disconnected", "dev-tcp")
    assert gone["reason"] == "tcp_closed"


def test_silent_client_is_dropped_after_one_and_a_half_keepalives(broker: RunningBroker, receiver: Receiver) -> None:
    with raw_client(broker.mqtt_port, "dev-frozen", keepalive=1) as sock:
        started = time.monotonic()
        assert closed_by_peer(sock)
        elapsed = time.monotonic() - started
    [gone] = receiver.wait("client.disconnected", "dev-frozen")
    assert gone["reason"] == "keepalive_timeout"
    assert 1.4 <= elapsed < 3.0
    assert 1400 <= gone["disconnected_at"] - gone["connected_at"] < 3000


def test_any_received_packet_counts_as_keepalive_activity(broker: RunningBroker, receiver: Receiver) -> None:
    with raw_client(broker.mqtt_port, "dev-pinging", keepalive=1) as sock:
        until = time.monotonic() + 2.0
        while time.monotonic() < until:
            sock.sendall(b"\xc0\x00")  # PINGREQ
            assert sock.recv(2) == b"\xd0\x00"  # PINGRESP
            time.sleep(0.4)
        assert receiver.events("client.disconnected", "dev-pinging") == []
    [gone] = receiver.wait("client.disconnected", "dev-pinging")
    assert gone["reason"] == "tcp_closed"


def test_new_clean_connection_discards_the_old_one_first(broker: RunningBroker, receiver: Receiver) -> None:
    with raw_client(broker.mqtt_port, "dev-twin") as first:
        [came] = receiver.wait("client.connected", "dev-twin")
        with raw_client(broker.mqtt_port, "dev-twin"):
            assert closed_by_peer(first)
            receiver.wait("client.connected", "dev-twin", count=2)
    names = events_of(receiver, "dev-twin")
    assert names[:3] == ["client.connected", "client.disconnected", "client.connected"]
    kicked = receiver.events("client.disconnected", "dev-twin")[0]
    assert kicked["reason"] == "discarded"
    assert kicked["connected_at"] == came["connected_at"]


def test_new_persistent_connection_takes_the_session_over(broker: RunningBroker, receiver: Receiver) -> None:
    with raw_client(broker.mqtt_port, "dev-resume", clean=False) as first:
        receiver.wait("client.connected", "dev-resume")
        with raw_client(broker.mqtt_port, "dev-resume", clean=False):
            assert closed_by_peer(first)
            receiver.wait("client.connected", "dev-resume", count=2)
    kicked = receiver.events("client.disconnected", "dev-resume")[0]
    assert kicked["reason"] == "takenover"
    assert [b["clean_start"] for b in receiver.events("client.connected", "dev-resume")] == [False, False]


def test_rest_kick_disconnects_with_reason_kicked(broker: RunningBroker, receiver: Receiver,
                                                   api: httpx.Client) -> None:
    with raw_client(broker.mqtt_port, "dev-kick") as sock:
        receiver.wait("client.connected", "dev-kick")
        assert api.delete("/api/v5/clients/dev-kick").status_code == 204
        assert closed_by_peer(sock)
    [gone] = receiver.wait("client.disconnected", "dev-kick")
    assert gone["reason"] == "kicked"
    missing = api.delete("/api/v5/clients/dev-kick")
    assert missing.status_code == 404
    assert missing.json() == {"code": "CLIENTID_NOT_FOUND", "message": "Client ID not found"}


def test_broker_shutdown_disconnects_with_reason_shutdown(
        make_broker: Callable[..., RunningBroker], receiver: Receiver) -> None:
    broker = make_broker()
    with raw_client(broker.mqtt_port, "dev-shutdown"):
        receiver.wait("client.connected", "dev-shutdown")
        broker.stop()
    [gone] = receiver.wait("client.disconnected", "dev-shutdown")
    assert gone["reason"] == "shutdown"


def test_message_publish_only_for_configured_filters(
        make_broker: Callable[..., RunningBroker], receiver: Receiver) -> None:
    broker = make_broker(message_topics=("dma/report/#",))
    device = Device(broker.mqtt_port, "dev-filter")
    try:
        device.publish("other/topic", b"x", qos=1)
        device.publish("dma/report/dev-filter/sys", b"y", qos=1)
        [published] = receiver.wait("message.publish", "dev-filter")
    finally:
        device.close()
    receiver.wait("client.disconnected", "dev-filter")
    assert published["topic"] == "dma/report/dev-filter/sys"
    assert len(receiver.events("message.publish")) == 1


def test_binary_payload_is_base64_with_payload_encoding(broker: RunningBroker, receiver: Receiver,
                                                        devices: Callable[..., Device]) -> None:
    device = devices("dev-bin")
    device.publish("dma/report/dev-bin/blob", b"\xff\x00\xfe", qos=1)
    device.publish("dma/report/dev-bin/text", "héllo".encode(), qos=1)
    blob, text = receiver.wait("message.publish", "dev-bin", count=2)
    assert blob["payload_encoding"] == "base64"
    assert base64.b64decode(blob["payload"]) == b"\xff\x00\xfe"
    assert text["payload"] == "héllo" and "payload_encoding" not in text


def test_events_of_one_client_keep_their_order(broker: RunningBroker, receiver: Receiver,
                                               devices: Callable[..., Device]) -> None:
    device = devices("dev-seq")
    for i in range(40):
        device.client.publish("dma/report/dev-seq/n", str(i).encode(), qos=1)
    published = receiver.wait("message.publish", "dev-seq", count=40)
    assert [int(b["payload"]) for b in published] == list(range(40))
    ids = [b["id"] for b in published]
    assert ids == sorted(ids) and len(set(ids)) == 40


def test_rest_publishes_are_not_posted_but_their_acks_are(broker: RunningBroker, receiver: Receiver,
                                                          api: httpx.Client, devices: Callable[..., Device]) -> None:
    device = devices("dev-cmd")
    device.subscribe("dma/cmd/dev-cmd", qos=1)
    r = api.post("/api/v5/publish", json={"topic": "dma/cmd/dev-cmd", "payload": '{"cmd":"reboot"}', "qos": 1})
    assert r.status_code == 200
    message_id = r.json()["id"]
    [acked] = receiver.wait("message.acked", "dev-cmd")
    assert acked["id"] == message_id
    assert acked["from_clientid"] == "http_api" and acked["from_username"] == "undefined"
    assert acked["payload"] == '{"cmd":"reboot"}' and acked["qos"] == 1
    assert [m.payload for m in device.messages] == [b'{"cmd":"reboot"}']
    assert receiver.events("message.publish", "http_api") == []
    assert all(b.get("clientid") != "http_api" for b in receiver.events())


def test_delivery_uses_the_lower_of_publish_and_subscription_qos(
        broker: RunningBroker, receiver: Receiver, api: httpx.Client, devices: Callable[..., Device]) -> None:
    device = devices("dev-qos0")
    device.subscribe("dma/cmd/dev-qos0", qos=0)
    assert api.post("/api/v5/publish", json={"topic": "dma/cmd/dev-qos0", "payload": "a", "qos": 1}).status_code == 200
    wait_for(lambda: device.messages, what="delivery")
    assert device.messages[0].qos == 0
    device.publish("dma/report/dev-qos0/x", b"after", qos=1)
    receiver.wait("message.publish", "dev-qos0")
    assert receiver.events("message.acked") == []


def test_offline_persistent_session_gets_queued_qos1_messages(
        broker: RunningBroker, receiver: Receiver, api: httpx.Client) -> None:
    first = Device(broker.mqtt_port, "dev-sleepy", clean_session=False)
    first.subscribe("dma/cmd/dev-sleepy", qos=1)
    first.close()
    receiver.wait("client.disconnected", "dev-sleepy")
    [row] = api.get("/api/v5/clients", params={"clientid": "dev-sleepy"}).json()["data"]
    assert row["connected"] is False and "disconnected_at" in row

    r = api.post("/api/v5/publish", json={"topic": "dma/cmd/dev-sleepy", "payload": "while away", "qos": 1})
    assert r.status_code == 200

    again = Device(broker.mqtt_port, "dev-sleepy", clean_session=False)
    try:
        wait_for(lambda: again.messages, what="the queued message")
        assert again.messages[0].payload == b"while away"
        assert again.messages[0].retain is False
        [acked] = receiver.wait("message.acked", "dev-sleepy")
        assert acked["id"] == r.json()["id"]
    finally:
        again.close()


def test_unacknowledged_qos1_message_is_delivered_again_to_the_persistent_session(
        broker: RunningBroker, receiver: Receiver, api: httpx.Client) -> None:
    with raw_client(broker.mqtt_port, "dev-flaky", clean=False) as sock:
        sock.sendall(subscribe_packet(1, "dma/cmd/dev-flaky", 1))
        assert sock.recv(5) == b"\x90\x03\x00\x01\x01"  # SUBACK, QoS 1 granted
        r = api.post("/api/v5/publish", json={"topic": "dma/cmd/dev-flaky", "payload": "reboot", "qos": 1})
        assert r.status_code == 200
        assert b"reboot" in sock.recv(1024)  # the PUBLISH, never acknowledged
    receiver.wait("client.disconnected", "dev-flaky")
    assert receiver.events("message.acked") == []

    again = Device(broker.mqtt_port, "dev-flaky", clean_session=False)
    try:
        wait_for(lambda: again.messages, what="the redelivery")
        assert [m.payload for m in again.messages] == [b"reboot"]
        [acked] = receiver.wait("message.acked", "dev-flaky")
        assert acked["id"] == r.json()["id"]
    finally:
        again.close()


def test_clean_session_gets_nothing_while_offline(broker: RunningBroker, receiver: Receiver,
                                                  api: httpx.Client) -> None:
    first = Device(broker.mqtt_port, "dev-clean")
    first.subscribe("dma/cmd/dev-clean", qos=1)
    first.close()
    receiver.wait("client.disconnected", "dev-clean")
    r = api.post("/api/v5/publish", json={"topic": "dma/cmd/dev-clean", "payload": "lost", "qos": 1})
    assert r.status_code == 202
    assert api.get("/api/v5/clients/dev-clean").status_code == 404


def test_ingest_503_and_429_are_retried_until_accepted(broker: RunningBroker, receiver: Receiver) -> None:
    receiver.script.extend([503, 429])
    with raw_client(broker.mqtt_port, "dev-retry"):
        receiver.wait("client.connected", "dev-retry")
    receiver.wait("client.disconnected", "dev-retry")
    stats = broker.dev_stats()
    assert receiver.attempts == 4
    assert stats["events.retried"] == 2 and stats["events.posted"] == 2 and stats["events.dropped"] == 0


def test_other_ingest_errors_drop_the_event_and_count_it(broker: RunningBroker, receiver: Receiver) -> None:
    receiver.script.extend([400])
    with raw_client(broker.mqtt_port, "dev-drop"):
        pass
    receiver.wait("client.disconnected", "dev-drop")
    assert receiver.events("client.connected", "dev-drop") == []
    stats = broker.dev_stats()
    assert stats["events.dropped"] == 1 and stats["events.retried"] == 0


def test_events_are_given_up_after_the_retry_ttl(make_broker: Callable[..., RunningBroker],
                                                  receiver: Receiver) -> None:
    broker = make_broker(retry_ttl=0.4)
    receiver.script.extend([503] * 1000)
    with raw_client(broker.mqtt_port, "dev-expire"):
        pass
    wait_for(lambda: broker.dev_stats()["events.expired"] == 2, what="both events to expire")
    assert receiver.events() == []


def test_a_hanging_ingest_does_not_stall_mqtt(make_broker: Callable[..., RunningBroker]) -> None:
    with socket.socket() as blackhole:  # accepts connections, never answers
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)
        broker = make_broker(ingest_url=f"http://127.0.0.1:{blackhole.getsockname()[1]}/emqx/events")
        sub = Device(broker.mqtt_port, "dev-sub")
        pub = Device(broker.mqtt_port, "dev-pub")
        try:
            sub.subscribe("t/stall", qos=1)
            started = time.monotonic()
            for i in range(20):
                pub.publish("t/stall", str(i).encode(), qos=1)
            wait_for(lambda: len(sub.messages) == 20, timeout=5, what="20 deliveries")
            assert time.monotonic() - started < 3.0
            assert broker.dev_stats()["events.pending"] >= 2
        finally:
            sub.close()
            pub.close()


def test_configured_users_are_checked(make_broker: Callable[..., RunningBroker], receiver: Receiver) -> None:
    broker = make_broker(users={"dev-user": "s3cret"})
    refused = Device(broker.mqtt_port, "dev-user", username="dev-user", password="wrong")
    anonymous = Device(broker.mqtt_port, "dev-anon")
    admitted = Device(broker.mqtt_port, "dev-user", username="dev-user", password="s3cret")
    try:
        assert not refused.accepted and not anonymous.accepted
        assert admitted.accepted
        [came] = receiver.wait("client.connected", "dev-user")
        assert came["username"] == "dev-user"
    finally:
        for device in (refused, anonymous, admitted):
            device.close()
    assert receiver.events("client.connected", "dev-anon") == []
    assert broker.dev_stats()["connects.refused"] == 2
