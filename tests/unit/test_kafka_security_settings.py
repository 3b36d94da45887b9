"""Kafka security settings: one translation to client kwargs, clear errors, secrets never shown."""

from __future__ import annotations

import ssl

import faust
import pytest

from detector.kafka_security import KafkaConnection, KafkaSecurityError, client_kwargs
from detector.settings import Settings

SECURITY_VARS = ("DETECTOR_KAFKA_BOOTSTRAP", "DETECTOR_KAFKA_SECURITY_PROTOCOL", "DETECTOR_KAFKA_SASL_MECHANISM",
                 "DETECTOR_KAFKA_SASL_USERNAME", "DETECTOR_KAFKA_SASL_PASSWORD", "DETECTOR_KAFKA_SASL_PASSWORD_FILE",
                 "DETECTOR_KAFKA_SSL_CAFILE", "DETECTOR_KAFKA_SSL_CERTFILE", "DETECTOR_KAFKA_SSL_KEYFILE",
                 "DETECTOR_KAFKA_SSL_CHECK_HOSTNAME")


@pytest.fixture
def env(monkeypatch):
    for name in SECURITY_VARS:
        monkeypatch.delenv(name, raising=False)

    def conn(**values: str) -> KafkaConnection:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        return Settings().kafka

    return conn


def test_plaintext_default(env):
    kw = env().client_kwargs()
    assert kw == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert env().faust_credentials() is None
    assert client_kwargs("h:1") == {"bootstrap_servers": "h:1", "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_scram_with_password_file(env, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret-value\n")
    conn = env(DETECTOR_KAFKA_BOOTSTRAP="b:9094", DETECTOR_KAFKA_SECURITY_PROTOCOL="sasl_ssl",
               DETECTOR_KAFKA_SASL_MECHANISM="scram-sha-512", DETECTOR_KAFKA_SASL_USERNAME="detector",
               DETECTOR_KAFKA_SASL_PASSWORD_FILE=str(pw))
    kw = conn.client_kwargs()
    assert kw["bootstrap_servers"] == "b:9094"
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_username"] == "detector" and kw["sasl_plain_password"] == "s3cret-value"
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext) and ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    creds = conn.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials) and creds.protocol.value == "SASL_SSL"
    assert creds.mechanism.value == "SCRAM-SHA-512"
    # the secret never shows in a repr or a description
    assert "s3cret" not in repr(conn) and "s3cret" not in conn.describe() and "s3cret" not in repr(creds)
    assert "s3cret" not in repr(Settings())


def test_ssl_only_and_hostname_check_can_be_disabled(env):
    conn = env(DETECTOR_KAFKA_SECURITY_PROTOCOL="SSL", DETECTOR_KAFKA_SSL_CHECK_HOSTNAME="false")
    assert conn.ssl_context().check_hostname is False
    assert isinstance(conn.faust_credentials(), faust.SSLCredentials)
    assert "sasl_mechanism" not in conn.client_kwargs()


@pytest.mark.parametrize("values, needle", [
    ({"DETECTOR_KAFKA_SECURITY_PROTOCOL": "TLS"}, "DETECTOR_KAFKA_SECURITY_PROTOCOL"),
    ({"DETECTOR_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "DETECTOR_KAFKA_SASL_PASSWORD": "x"},
     "DETECTOR_KAFKA_SASL_USERNAME"),
    ({"DETECTOR_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "DETECTOR_KAFKA_SASL_USERNAME": "u"},
     "DETECTOR_KAFKA_SASL_PASSWORD"),
    ({"DETECTOR_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "DETECTOR_KAFKA_SASL_USERNAME": "u",
      "DETECTOR_KAFKA_SASL_PASSWORD": "p", "DETECTOR_KAFKA_SASL_MECHANISM": "MD5"}, "DETECTOR_KAFKA_SASL_MECHANISM"),
    ({"DETECTOR_KAFKA_SECURITY_PROTOCOL": "SSL", "DETECTOR_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
     "DETECTOR_KAFKA_SSL_CAFILE"),
    ({"DETECTOR_KAFKA_SSL_CAFILE": __file__}, "does not use TLS"),
])
def test_bad_settings_name_the_setting(env, values, needle):
    with pytest.raises(KafkaSecurityError, match=needle):
        env(**values)


def test_settings_bootstrap_override_keeps_security(env, monkeypatch):
    env(DETECTOR_KAFKA_SECURITY_PROTOCOL="SSL")
    s = Settings(kafka_bootstrap="other:1")
    assert s.kafka.bootstrap == "other:1" and s.kafka.protocol == "SSL"
