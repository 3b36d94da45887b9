"""Our signatures verify with the reference `standardwebhooks` package."""

from __future__ import annotations

import base64

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from detector.alerts.signing import Signer, decode_secret, generate_secret, sign


def test_signature_verifies_with_standardwebhooks():
    secret = generate_secret()
    body = b'{"schema":"exposure-alert/v1","id":"inc_1:firing:1","summary":"caf\xc3\xa9"}'
    headers = Signer(secret).headers("inc_1:firing:1", body)
    assert headers["webhook-id"] == "inc_1:firing:1"
    assert Webhook(secret).verify(body, headers)["id"] == "inc_1:firing:1"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"firing", b"resolvd"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)


def test_known_vector_and_secret_forms():
    key = b"0123456789abcdef01234567"  # 24 bytes: the least a secret may hold
    secret = "whsec_" + base64.b64encode(key).decode()
    assert decode_secret(secret) == key == decode_secret(secret[len("whsec_"):])
    ref = Webhook(secret)
    from datetime import datetime, timezone
    expected = ref.sign("msg_1", datetime.fromtimestamp(1_700_000_000, tz=timezone.utc), "{}")
    assert sign(key, "msg_1", 1_700_000_000, b"{}") == expected


def test_timestamp_is_fresh_per_attempt_but_id_is_stable():
    clock = iter([1000.0, 1060.0])
    s = Signer(generate_secret(), clock=lambda: next(clock))
    a, b = s.headers("id-1", b"x"), s.headers("id-1", b"x")
    assert a["webhook-id"] == b["webhook-id"] and a["webhook-timestamp"] != b["webhook-timestamp"]


def test_from_env():
    assert Signer.from_env("NOPE", {}) is None
    assert Signer.from_env("S", {"S": generate_secret()}) is not None
