"""Standard Webhooks signatures from `adapter.delivery.signing`, checked by the `standardwebhooks` library."""

from __future__ import annotations

import base64
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from adapter.delivery import signing

BODY = b'{"event":"client.connected","clientid":"dev-1","ts":1764000000000}'


def signed(secret: str, body: bytes = BODY, msg_id: str = "msg_2x8Kc", ts: int | None = None,
           ) -> dict[str, str]:
    return signing.headers(signing.secret_bytes(secret), msg_id, int(time.time()) if ts is None else ts, body)


def test_new_secret_format() -> None:
    secret = signing.new_secret()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret)
    assert len(signing.secret_bytes(secret)) == 32
    assert signing.new_secret() != secret


def test_secret_bytes_roundtrip() -> None:
    raw = bytes(range(32))
    assert signing.secret_bytes("whsec_" + base64.b64encode(raw).decode()) == raw


def test_headers_shape() -> None:
    h = signed(signing.new_secret(), ts=1764000000)
    assert set(h) == {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}
    assert (h["webhook-id"], h["webhook-timestamp"], h["content-type"]) == ("msg_2x8Kc", "1764000000",
                                                                             "application/json")
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", h["webhook-signature"])


def test_known_vector() -> None:
    """The example from the Standard Webhooks specification."""
    key = signing.secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    assert signing.signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_library_verifies() -> None:
    secret = signing.new_secret()
    h = signed(secret)
    assert Webhook(secret).verify(BODY, h) == {"event": "client.connected", "clientid": "dev-1",
                                               "ts": 1764000000000}


@settings(max_examples=50)
@given(body=st.text(max_size=300).map(str.encode),
       msg_id=st.from_regex(r"msg_[A-Za-z0-9]{1,30}", fullmatch=True))
def test_library_verifies_any_body(body: bytes, msg_id: str) -> None:
    secret = signing.new_secret()
    h = signed(secret, body, msg_id)
    assert Webhook(secret).verify(body, h, json_parse=False) is None


def test_tampered_body_fails() -> None:
    secret = signing.new_secret()
    h = signed(secret)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"dev-1", b"dev-2"), h)


def test_tampered_timestamp_fails() -> None:
    secret = signing.new_secret()
    h = signed(secret)
    h["webhook-timestamp"] = str(int(h["webhook-timestamp"]) - 1)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, h)


def test_tampered_id_fails() -> None:
    secret = signing.new_secret()
    h = {**signed(secret), "webhook-id": "msg_other"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, h)


def test_other_secret_fails() -> None:
    h = signed(signing.new_secret())
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(BODY, h)


def test_stale_timestamp_fails() -> None:
    secret = signing.new_secret()
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, signed(secret, ts=int(time.time()) - 3600))
