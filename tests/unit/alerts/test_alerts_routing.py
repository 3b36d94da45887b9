"""config/alerting.yaml and the environment decide which sinks hear what."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts_fixtures import finding
from detector.alerts.lifecycle import Lifecycle, LifecycleConfig
from detector.alerts.routing import load_alerting, parse_alerting

REPO = Path(__file__).resolve().parents[3]


def note(severity="critical", experiment="subs-mvp-crm-qa", owner=None):
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0))
    regs = {experiment: {"owner": owner}} if owner else None
    [n] = lc.on_findings([finding(experiment=experiment, severity=severity)], 1_000, registrations=regs)
    return n


def test_example_config_is_safe_with_no_environment(caplog):
    caplog.set_level("INFO", logger="detector.alerts.routing")  # unset sinks are the default: INFO, not WARNING
    cfg = load_alerting(REPO / "config" / "alerting.yaml", env={})
    assert cfg.sinks == {}
    assert set(cfg.skipped) == {"ops-webhook", "alertmanager", "am-receiver", "pagerduty", "slack"}
    assert "OPS_WEBHOOK_URL" in caplog.text
    assert cfg.lifecycle.group_wait_ms == 500 and cfg.delivery.deadline_s == 86400


def test_example_config_routes_by_severity():
    env = {"OPS_WEBHOOK_URL": "http://o", "SLACK_WEBHOOK_URL": "http://s", "PAGERDUTY_ROUTING_KEY": "k",
           "ALERTMANAGER_URL": "http://a", "AM_WEBHOOK_URL": "http://w"}
    cfg = load_alerting(REPO / "config" / "alerting.yaml", env=env)
    assert [s.name for s in cfg.sinks_for(note("critical"))] == ["pagerduty", "slack", "ops-webhook", "alertmanager"]
    assert [s.name for s in cfg.sinks_for(note("warning"))] == ["slack", "ops-webhook", "alertmanager"]
    assert [s.name for s in cfg.sinks_for(note("info"))] == ["ops-webhook", "alertmanager"]


def test_zero_config_webhook_urls_hear_everything():
    cfg = parse_alerting(None, {"DETECTOR_WEBHOOK_URLS": "http://a/h, http://b/h,"})
    assert [s.url for s in cfg.sinks_for(note("info"))] == ["http://a/h", "http://b/h"]
    assert all(s.type == "webhook" for s in cfg.sinks.values())


def test_routes_match_owner_and_experiment_globs_and_continue():
    raw = {
        "sinks": {"subs": {"type": "slack", "url": "http://subs"}, "all": {"type": "webhook", "url": "http://all"},
                  "qa": {"type": "webhook", "url": "http://qa"}},
        "routes": [
            {"match": {"experiment": "*-qa"}, "sinks": ["qa"], "continue": True},
            {"match": {"owner": ["subscriptions"]}, "sinks": ["subs"]},
            {"sinks": ["all"]},
        ],
    }
    cfg = parse_alerting(raw, {})
    assert [s.name for s in cfg.sinks_for(note(experiment="crm-qa", owner="subscriptions"))] == ["qa", "subs"]
    assert [s.name for s in cfg.sinks_for(note(experiment="checkout", owner="payments"))] == ["all"]
    assert [s.name for s in cfg.sinks_for(note(experiment="x-qa", owner="payments"))] == ["qa", "all"]


def test_secrets_in_the_file_are_refused_and_unknown_sinks_are_errors():
    with pytest.raises(ValueError, match="environment"):
        parse_alerting({"sinks": {"x": {"type": "webhook", "url": "http://x", "secret": "whsec_abc"}}}, {})
    with pytest.raises(ValueError, match="undeclared"):
        parse_alerting({"sinks": {}, "routes": [{"sinks": ["ghost"]}]}, {})
    with pytest.raises(FileNotFoundError):
        load_alerting("/nonexistent/alerting.yaml", env={})


def test_token_and_secret_come_from_env():
    env = {"U": "http://u", "S": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "T": "tok"}
    cfg = parse_alerting({"sinks": {"h": {"type": "webhook", "url_env": "U", "secret_env": "S", "token_env": "T"}}}, env)
    h = cfg.sinks["h"]
    assert h.url == "http://u" and h.signer is not None and h.bearer_token == "tok"
