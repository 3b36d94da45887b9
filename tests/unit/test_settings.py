"""Settings: one typed object read from the environment, secrets from files, errors by variable name."""

from __future__ import annotations

import pytest

from detector.alerts.routing import load_alerting
from detector.settings import Settings, SettingsError, load_settings


def test_defaults_match_the_readme(monkeypatch):
    for name in ("DETECTOR_WEB_PORT", "DETECTOR_CHECKPOINT_INTERVAL", "DETECTOR_WEBHOOK_URLS", "DETECTOR_API_TOKEN",
                 "DETECTOR_API_TOKEN_FILE", "DETECTOR_EXPECTATIONS_PRUNE"):
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert (s.kafka_bootstrap, s.web_port, s.partitions, s.checkpoint_interval_s) == ("127.0.0.1:9092", 6066, 8, 1.0)
    assert s.webhook_urls == () and s.api_token == "" and s.expectations_prune is False
    assert s.faust_id == "exposure-detector-app" and s.topics.expectations == "exposure.expectations"


def test_environment_and_aliases(monkeypatch):
    monkeypatch.setenv("DETECTOR_WEB_PORT", "7000")
    monkeypatch.setenv("DETECTOR_CHECKPOINT_INTERVAL", "2.5")
    monkeypatch.setenv("DETECTOR_MAX_BATCH", "10")
    monkeypatch.setenv("DETECTOR_FETCH_PARTITION_BYTES", "4194304")
    monkeypatch.setenv("DETECTOR_WEBHOOK_URLS", "http://a/h, http://b/h,")
    monkeypatch.setenv("DETECTOR_EXPECTATIONS_PRUNE", "true")
    s = Settings()
    assert (s.web_port, s.checkpoint_interval_s, s.max_batch_records) == (7000, 2.5, 10)
    assert s.fetch_partition_bytes == 4 * 1024 * 1024
    assert s.webhook_urls == ("http://a/h", "http://b/h") and s.expectations_prune is True
    assert Settings(partitions=3, checkpoint_interval_s=4).checkpoint_interval_s == 4.0  # init by field name


def test_secrets_from_files_are_not_shown(monkeypatch, tmp_path):
    (tmp_path / "token").write_text("t0k3n\n")
    (tmp_path / "secret").write_text("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2Vj")
    (tmp_path / "pd").write_text("routing-key\n")
    monkeypatch.delenv("DETECTOR_API_TOKEN", raising=False)
    monkeypatch.delenv("DETECTOR_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("DETECTOR_API_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("DETECTOR_WEBHOOK_SECRET_FILE", str(tmp_path / "secret"))
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY_FILE", str(tmp_path / "pd"))
    s = Settings()
    assert s.api_token == "t0k3n" and s.webhook_secret == "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2Vj"
    assert "t0k3n" not in repr(s) and "whsec" not in repr(s)
    assert s.environ["DETECTOR_WEBHOOK_SECRET"] == "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2Vj"
    assert s.environ["PAGERDUTY_ROUTING_KEY"] == "routing-key"  # any variable the alerting config names
    monkeypatch.setenv("DETECTOR_API_TOKEN", "from-env")
    assert Settings().api_token == "from-env"  # the variable wins over the file


def test_alerting_uses_the_settings_webhook_urls_and_secret(monkeypatch, tmp_path):
    monkeypatch.setenv("DETECTOR_WEBHOOK_URLS", "http://127.0.0.1:9/a")
    monkeypatch.delenv("DETECTOR_WEBHOOK_SECRET", raising=False)
    (tmp_path / "secret").write_text("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2Vj")
    monkeypatch.setenv("DETECTOR_WEBHOOK_SECRET_FILE", str(tmp_path / "secret"))
    s = Settings()
    cfg = load_alerting(None, s.environ, webhook_urls=s.webhook_urls)
    assert cfg.catch_all == ("webhook-env-1",)
    assert cfg.sinks["webhook-env-1"].url == "http://127.0.0.1:9/a"
    assert cfg.sinks["webhook-env-1"].signer is not None
    other = load_alerting(None, s.environ, webhook_urls=("http://x/1", "http://x/2"))
    assert other.catch_all == ("webhook-env-1", "webhook-env-2")


def test_a_bad_value_names_its_variable_and_hides_secrets(monkeypatch):
    monkeypatch.setenv("DETECTOR_WEB_PORT", "abc")
    monkeypatch.setenv("DETECTOR_SESSION_TIMEOUT", "soon")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "DETECTOR_WEB_PORT='abc'" in str(info.value) and "DETECTOR_SESSION_TIMEOUT='soon'" in str(info.value)
