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
    docs = (ROOT / "README.md").read_text()
    for alert in re.findall(r"- alert: (\w+)", rules):
        assert f"alertname: {alert}" in tests, f"{alert} has no promtool test"
        assert f"`{alert}`" in docs, f"{alert} missing from README.md"


def test_every_exported_metric_is_in_the_readme():
    """README.md lists every metric the worker exports, with its meaning."""
    import re
    from obs_support import ROOT, observation

    from detector.observability.metrics import DetectorMetrics

    m = DetectorMetrics()
    m.update_experiment("exp-a", observation({
        "experiment": "exp-a", "observed": {"enrolled_users": 1, "eligible_users": 2, "variants": {"a": 1}},
        "expected": {"fraction": 0.5, "max_users": 3, "variants": {"a": 1.0}},
        "rules": {"max_users_exceeded": {"state": "ok", "statistic": 1.0, "threshold": 3.0}}}))
    text = m.render()[0].decode()
    readme = (ROOT / "README.md").read_text()
    names = {re.sub(r"_(total|created|bucket|count|sum)$", "", line.split("{")[0].split(" ")[0])
             for line in text.splitlines() if line.startswith("exposure_detector_")}
    missing = sorted(n for n in names if f"`{n}" not in readme)
    assert not missing, f"metrics missing from README.md: {missing}"
