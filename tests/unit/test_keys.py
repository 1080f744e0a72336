"""Every Redis key, pinned: a changed name is a data migration and must be deliberate."""

from adapter.keys import Keys


def test_every_key_is_pinned() -> None:
    k = Keys("iot")
    assert k.users() == "iot:users"
    assert k.user("bob") == "iot:user:bob"
    assert k.token("ab12") == "iot:token:ab12"
    assert k.user_tokens("bob") == "iot:user-tokens:bob"
    assert k.login_failures_user("bob") == "iot:login-fail:user:bob"
    assert k.login_failures_ip("10.0.0.1") == "iot:login-fail:ip:10.0.0.1"
    assert k.metrics() == "iot:metrics"
    assert k.queue("default") == "iot-default"
    assert k.client("SN1") == "iot:client:SN1"
    assert k.devices() == "iot:devices"
    assert k.devices_online() == "iot:devices:online"
    assert k.devices_offline() == "iot:devices:offline"
    assert k.peripheral("GW1", "P1") == "iot:peri:GW1:P1"
    assert k.peripherals() == "iot:peris"
    assert k.peripherals_online() == "iot:peris:online"
    assert k.peripherals_offline() == "iot:peris:offline"
    assert k.peripherals_of_gw("G") == "iot:peris:gw:G"
    assert k.peripheral_prefix() + "GW1:P1" == k.peripheral("GW1", "P1")
    assert k.peripherals_of_gw_prefix() + "G" == k.peripherals_of_gw("G")
    assert k.callbacks_enabled() == "iot:callbacks:enabled"
    assert k.outbox() == "iot:outbox:presence"
    assert k.seen("msg:AB") == "iot:seen:msg:AB"


def test_prefix_applies_everywhere() -> None:
    k = Keys("acme")
    names = [getattr(k, n) for n in dir(k) if not n.startswith("_") and callable(getattr(k, n))]
    for build in names:
        argc = build.__code__.co_argcount - 1
        key = build(*(["x"] * argc))
        assert key.startswith("acme:") or key.startswith("acme-"), key
