"""Grafana dashboards: generated per experiment, and the detector's own."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from detector.cli import main as cli_main
from detector.observability.dashboards import detector_dashboard, experiment_dashboard, main

from obs_support import ROOT

GRAFANA_FILE = ROOT / "config" / "grafana" / "detector-dashboard.json"


def queries(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_experiment_dashboard_queries_select_the_experiment():
    dashboard = experiment_dashboard("subs-mvp-crm-qa")
    json.loads(json.dumps(dashboard))
    assert dashboard["title"] == "Exposure: subs-mvp-crm-qa"
    exprs = queries(dashboard)
    assert len(exprs) >= 10
    for expr in exprs:
        assert 'experiment="subs-mvp-crm-qa"' in expr, expr
    joined = "\n".join(exprs)
    for metric in ("enrolled_users", "declared_max_users", "observed_fraction", "declared_fraction",
                   "variant_users", "rule_state"):
        assert f"exposure_detector_experiment_{metric}" in joined
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_experiment_name_is_escaped():
    exprs = queries(experiment_dashboard('we"ird\\name'))
    assert all('experiment="we\\"ird\\\\name"' in e for e in exprs)
    with pytest.raises(ValueError):
        experiment_dashboard("")


def test_distinct_uids():
    assert experiment_dashboard("a/b")["uid"] != experiment_dashboard("a-b")["uid"]


def test_main_prints_json(capsys):
    assert main(["subs-mvp-crm-qa"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Exposure: subs-mvp-crm-qa"
    assert cli_main(["dashboard", "checkout-v2", "--api", "--compact"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["overwrite"] is True and body["dashboard"]["title"] == "Exposure: checkout-v2"
    assert main([]) == 2
    assert main(["--help"]) == 0


def test_detector_dashboard_file_is_generated_output():
    on_disk = json.loads(GRAFANA_FILE.read_text())
    assert on_disk == detector_dashboard(), (
        "regenerate: python -m detector.observability.dashboards --detector > config/grafana/detector-dashboard.json")
    titles = {p["title"] for p in on_disk["panels"]}
    for wanted in ("Throughput", "Consumer lag per partition", "Dead letters by reason", "Batch duration",
                   "Notifications by outcome", "Experiments in breach"):
        assert wanted in titles
    assert any("histogram_quantile(0.99" in q for q in queries(on_disk))


def test_every_query_is_valid_promql(promtool, tmp_path):
    """promtool parses each query as a recording rule ($__rate_interval -> 5m)."""
    exprs = queries(detector_dashboard()) + queries(experiment_dashboard('subs-mvp-crm-qa'))
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
