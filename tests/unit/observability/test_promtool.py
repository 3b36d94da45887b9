"""promtool: rules, rule unit tests, scrape config, and lint of our /metrics output.

Needs the Debian package `prometheus`. Skipped without it locally; fails when CI=true.
"""

from __future__ import annotations

import subprocess

from obs_support import PROMETHEUS_DIR


def run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout}\n{result.stderr}"
    return result


def test_check_rules(promtool):
    out = run([promtool, "check", "rules", *sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))])
    assert "SUCCESS" in out.stdout


def test_rule_unit_tests(promtool):
    tests = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert tests
    run([promtool, "test", "rules", *tests], cwd=PROMETHEUS_DIR)


def test_check_config(promtool):
    run([promtool, "check", "config", PROMETHEUS_DIR / "prometheus.yml"])


def test_check_metrics_on_our_output(promtool, metrics):
    body, _ = metrics.render()
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""  # no lint warnings either


def test_alert_names_documented():
    import re
    from obs_support import ROOT

    rules = (PROMETHEUS_DIR / "rules" / "detector.yml").read_text()
    tests = "".join(p.read_text() for p in (PROMETHEUS_DIR / "tests").glob("*.yml"))
    docs = (ROOT / "docs" / "metrics.md").read_text()
    for alert in re.findall(r"- alert: (\w+)", rules):
        assert f"alertname: {alert}" in tests, f"{alert} has no promtool test"
        assert f"`{alert}`" in docs, f"{alert} missing from docs/metrics.md"
