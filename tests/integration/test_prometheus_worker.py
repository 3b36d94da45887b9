"""Observability (issue 6): a real Prometheus scrapes a real worker fed through Kafka.

A worker with two YAML registrations consumes assignment events from the local broker; a
Prometheus (Debian package `prometheus`, started here on a free loopback port with a temp
config, scrape interval 1 s) scrapes its /metrics, and `/api/v1/query` must return the
per-experiment series (enrolled users, eligible users, observed and declared fraction,
declared max users, per-variant users, each rule's state) with the right values, follow
new events, and drop the declared series of a deleted registration. `promtool check
metrics` must accept the live /metrics output.

With CI=true a missing binary is a failure, not a skip.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request

import pytest
import yaml
from harness import now_ms, require_binary, start_prometheus, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.prometheus]

TOKEN = "prom-test-token"


@pytest.fixture
def prometheus_for(tmp_path):
    """Factory: prometheus_for(target) starts Prometheus scraping http://target/metrics every second."""
    peers = []

    def start(target: str) -> str:
        peer = start_prometheus([target], tmp_path)
        peers.append(peer)
        return peer.url

    yield start
    for peer in peers:
        peer.stop()


def query(prom: str, expr: str) -> dict[tuple, float]:
    """Instant query -> {sorted label items without __name__/job/instance: value}."""
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    out = {}
    for s in body["data"]["result"]:
        labels = tuple(sorted((k, v) for k, v in s["metric"].items() if k not in ("__name__", "job", "instance")))
        out[labels] = float(s["value"][1])
    return out


def wait_query(prom: str, expr: str, expected: dict | float, timeout: float = 20) -> None:
    """Wait until the query returns exactly `expected` (a number for one series, or a label->value dict)."""
    last = {}

    def ok():
        nonlocal last
        last = query(prom, expr)
        if isinstance(expected, dict):
            return last == {tuple(sorted(k)): v for k, v in expected.items()}
        return len(last) == 1 and abs(next(iter(last.values())) - expected) < 1e-9

    try:
        wait_until(ok, timeout, 0.25, expr)
    except AssertionError:
        raise AssertionError(f"{expr}: expected {expected!r}, Prometheus returns {last!r}") from None


def events(experiment, users, *, enrolled=True, variant=None):
    t = now_ms()
    return [{"experiment": experiment, "user_id": u, "enrolled": enrolled,
             "variant": (variant or ("control", "treatment")[i % 2]) if enrolled else None, "ts": t}
            for i, u in enumerate(users)]


def test_prometheus_scrapes_per_experiment_series_from_a_kafka_fed_worker(workers, producer, prometheus_for, tmp_path):
    exp_dir = tmp_path / "expectations"
    exp_dir.mkdir()
    ramp = {
        "experiment": "prom-ramp", "owner": "growth", "severity": "warning",
        "population": {"max_users": 20, "fraction": 0.5}, "variants": {"control": 0.5, "treatment": 0.5},
    }
    (exp_dir / "ramp.yaml").write_text(yaml.safe_dump(ramp))
    # Every rule the registration activates has a state series (the rule registry decides which).
    from detector.registration.model import parse_registration

    ramp_rules = parse_registration(ramp).active_rules()
    (exp_dir / "qa.yaml").write_text(yaml.safe_dump({
        "experiment": "prom-qa", "owner": "crm", "severity": "critical", "population": {"allowlist": ["qa-1", "qa-2"]},
    }))
    w = workers(env={"DETECTOR_API_TOKEN": TOKEN, "DETECTOR_EXPECTATIONS_DIR": str(exp_dir)})
    prom = prometheus_for(f"127.0.0.1:{w.port}")

    # prom-ramp: 30 enrolled (15 per variant) out of 100 eligible -> over max_users, fraction ok.
    # prom-qa: one tester and two users outside the allowlist -> allowlist breach.
    sent = producer.send_events(
        events("prom-ramp", [f"r{i}" for i in range(30)])
        + events("prom-ramp", [f"e{i}" for i in range(70)], enrolled=False)
        + events("prom-qa", ["qa-1", "out-1", "out-2"])
    )
    m = "exposure_detector_experiment_"
    wait_query(prom, 'up{job="exposure-detector"}', 1)
    wait_query(prom, m + 'enrolled_users{experiment="prom-ramp"}', 30)
    wait_query(prom, m + "eligible_users", {(("experiment", "prom-ramp"),): 100, (("experiment", "prom-qa"),): 3})
    wait_query(prom, m + 'observed_fraction{experiment="prom-ramp"}', 0.3)
    wait_query(prom, m + 'declared_fraction{experiment="prom-ramp"}', 0.5)
    wait_query(prom, m + 'declared_max_users{experiment="prom-ramp"}', 20)
    wait_query(prom, m + 'variant_users{experiment="prom-ramp"}',
               {(("experiment", "prom-ramp"), ("variant", "control")): 15,
                (("experiment", "prom-ramp"), ("variant", "treatment")): 15})
    assert {"max_users_exceeded", "fraction_exceeded", "sample_ratio_mismatch"} <= set(ramp_rules)
    wait_query(prom, m + 'rule_state{experiment="prom-ramp"}',
               {(("experiment", "prom-ramp"), ("rule", r)): int(r == "max_users_exceeded") for r in ramp_rules})
    wait_query(prom, m + 'rule_state{experiment="prom-qa"}', {(("experiment", "prom-qa"), ("rule", "allowlist_breach")): 1})
    wait_query(prom, m + 'enrolled_users{experiment="prom-qa"}', 3)
    wait_query(prom, m + 'info{experiment="prom-qa"}',
               {(("experiment", "prom-qa"), ("owner", "crm"), ("severity", "critical")): 1})
    wait_query(prom, "exposure_detector_events_consumed_total", sent)
    # No user id ever becomes a label value.
    with urllib.request.urlopen(f"{w.url}/metrics", timeout=5) as r:
        text = r.read().decode()
    for uid in ("qa-1", "out-1", "r0", "e0"):
        assert f'"{uid}"' not in text

    # promtool accepts the live output (per-experiment series included).
    promtool = require_binary("promtool", package="prometheus")
    res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr

    # New events move the series: 10 more enrolled users.
    producer.send_events(events("prom-ramp", [f"r{i}" for i in range(30, 40)]))
    wait_query(prom, m + 'enrolled_users{experiment="prom-ramp"}', 40)
    wait_query(prom, m + 'eligible_users{experiment="prom-ramp"}', 110)

    # Deleting a registration drops its declared series; the experiment still has traffic, so it
    # is now observed as unregistered.
    code, body = w.request("DELETE", "/v1/expectations/prom-ramp?confirm=true", None,
                           {"Authorization": f"Bearer {TOKEN}"})
    assert code == 200, body
    wait_query(prom, m + 'declared_max_users{experiment="prom-ramp"}', {})
    wait_query(prom, m + 'declared_fraction{experiment="prom-ramp"}', {})
    wait_query(prom, m + 'rule_state{experiment="prom-ramp"}',
               {(("experiment", "prom-ramp"), ("rule", "unregistered")): 1})


def test_promtool_check_metrics_on_a_fresh_worker(workers):
    """Before any event: only the health metrics, which must lint cleanly too."""
    promtool = require_binary("promtool", package="prometheus")
    w = workers()
    with urllib.request.urlopen(f"{w.url}/metrics", timeout=5) as r:
        text = r.read().decode()
        assert r.headers["Content-Type"].startswith("text/plain"), r.headers["Content-Type"]
    assert "exposure_detector_build_info" in text
    res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
