"""DetectorMetrics: per-experiment series, their removal, label hygiene, HTTP exposition."""

from __future__ import annotations

import copy

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from detector.observability.metrics import DetectorMetrics

from obs_support import BREACHING, BREACHING_DATA, HEALTHY, USER_IDS, observation

ALLOWED_LABELS = {"experiment", "variant", "rule", "severity", "owner", "reason", "sink", "outcome",
                  "source", "topic", "partition", "route", "method", "status", "version", "python",
                  "le", "quantile",
                  # prometheus_client's own platform / gc collectors
                  "implementation", "major", "minor", "patchlevel", "generation"}


def samples(m: DetectorMetrics) -> dict[tuple[str, frozenset], float]:
    text = m.render()[0].decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(m: DetectorMetrics, name: str, **labels) -> float | None:
    return samples(m).get((name, frozenset(labels.items())))


def experiment_series(m: DetectorMetrics, experiment: str) -> list:
    return [k for k in samples(m) if ("experiment", experiment) in k[1]]


def test_render_is_text_format(metrics):
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    assert b"exposure_detector_events_consumed_total 1000.0" in body


def test_per_experiment_values(metrics):
    e = {"experiment": "subs-mvp-crm-qa"}
    p = "exposure_detector_experiment_"
    assert value(metrics, p + "enrolled_users", **e) == 40
    assert value(metrics, p + "eligible_users", **e) == 100
    assert value(metrics, p + "observed_fraction", **e) == 0.4
    assert value(metrics, p + "declared_fraction", **e) == 0.01
    assert value(metrics, p + "declared_max_users", **e) == 3
    assert value(metrics, p + "variant_users", variant="control", **e) == 21
    assert value(metrics, p + "variant_users", variant="treatment", **e) == 19
    assert value(metrics, p + "declared_variant_weight", variant="control", **e) == 0.5
    assert value(metrics, p + "rule_state", rule="max_users_exceeded", **e) == 1
    assert value(metrics, p + "rule_state", rule="allowlist_breach", **e) == 0
    assert value(metrics, p + "rule_statistic", rule="max_users_exceeded", **e) == 40
    assert value(metrics, p + "rule_threshold", rule="fraction_exceeded", **e) == 9.21
    assert value(metrics, p + "rule_statistic", rule="allowlist_breach", **e) is None  # None -> absent
    assert value(metrics, p + "open_incidents", **e) == 2
    assert value(metrics, p + "events_total", **e) == 200
    assert value(metrics, p + "last_event_timestamp_seconds", **e) == 1_612_897_200
    assert value(metrics, p + "info", severity="critical", owner="subscriptions", **e) == 1
    assert value(metrics, "exposure_detector_experiments") == 2


def test_remove_experiment_drops_every_series(metrics):
    assert len(experiment_series(metrics, "subs-mvp-crm-qa")) > 10
    metrics.remove_experiment("subs-mvp-crm-qa")
    assert experiment_series(metrics, "subs-mvp-crm-qa") == []
    assert b'experiment="subs-mvp-crm-qa"' not in metrics.render()[0]
    assert value(metrics, "exposure_detector_experiment_enrolled_users", experiment="checkout-v2") == 10
    assert value(metrics, "exposure_detector_experiments") == 1
    metrics.remove_experiment("never-seen")  # no error
    # Open-incident count does not resurrect the experiment.
    metrics.update_experiment("subs-mvp-crm-qa", HEALTHY)
    assert value(metrics, "exposure_detector_experiment_open_incidents", experiment="subs-mvp-crm-qa") == 0


def test_update_replaces_stale_rules_and_variants(metrics):
    later = copy.deepcopy(BREACHING_DATA)
    del later["rules"]["fraction_exceeded"]
    later["observed"]["variants"] = {"control": 30}
    later["rules"]["max_users_exceeded"]["state"] = "ok"
    metrics.update_experiment("subs-mvp-crm-qa", observation(later))
    e = {"experiment": "subs-mvp-crm-qa"}
    p = "exposure_detector_experiment_"
    assert value(metrics, p + "rule_state", rule="fraction_exceeded", **e) is None
    assert value(metrics, p + "rule_statistic", rule="fraction_exceeded", **e) is None
    assert value(metrics, p + "variant_users", variant="treatment", **e) is None
    assert value(metrics, p + "rule_state", rule="max_users_exceeded", **e) == 0
    assert value(metrics, p + "open_incidents", **e) == 2  # kept across updates


@pytest.mark.parametrize("data", [
    None, {}, {"observed": {}, "expected": {}, "rules": {}},
    {"observed": {"enrolled_users": 3, "observed_fraction": float("nan")}},
    {"rules": {"x": {"state": "firing", "statistic": float("inf")}}}, {"rules": {"x": {"state": "ok"}}},
])
def test_tolerates_partial_observations(data):
    """Observations are typed (the engine's `Observation`); empty parts and non-finite numbers are fine."""
    m = DetectorMetrics(process_metrics=False)
    m.update_experiment("exp", None if data is None else observation({"experiment": "exp", **data}))
    text = m.render()[0].decode()
    assert 'exposure_detector_experiment_info{experiment="exp",owner="",severity="warning"} 1.0' in text
    list(text_string_to_metric_families(text))  # parses


def test_fraction_and_declaration_read_by_name():
    m = DetectorMetrics(process_metrics=False)
    m.update_experiment("exp", observation({
        "experiment": "exp", "observed": {"enrolled_users": 5, "eligible_users": 20, "observed_fraction": 0.25},
        "expected": {"max_users": 7, "fraction": 0.1}}))
    assert value(m, "exposure_detector_experiment_observed_fraction", experiment="exp") == 0.25
    assert value(m, "exposure_detector_experiment_declared_max_users", experiment="exp") == 7
    assert value(m, "exposure_detector_experiment_declared_fraction", experiment="exp") == 0.1
    m.update_experiment("exp", observation({"experiment": "exp", "observed": {"enrolled_users": 0, "eligible_users": 0}}))
    assert value(m, "exposure_detector_experiment_observed_fraction", experiment="exp") is None


def test_no_user_id_labels(metrics):
    text = metrics.render()[0].decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert set(sample.labels) <= ALLOWED_LABELS, sample
            assert not any("user" in name for name in sample.labels), sample
            for label_value in sample.labels.values():
                assert label_value not in USER_IDS, sample
    for user_id in USER_IDS:
        assert user_id not in text


def test_own_registry_only():
    a, b = DetectorMetrics(), DetectorMetrics()  # no duplicate-registration error
    a.record_consumed(3)
    assert value(b, "exposure_detector_events_consumed_total") == 0
    assert not any(name.startswith("exposure_detector") for name in REGISTRY._names_to_collectors)


def test_free_form_labels_stay_low_cardinality():
    m = DetectorMetrics(process_metrics=False)
    for i in range(200):
        m.record_dead_letter(f"Bad input #{i}: {'x' * 100}")
    m.record_dead_letter("Invalid JSON")
    reasons = {dict(k[1])["reason"] for k in samples(m) if k[0] == "exposure_detector_dead_lettered_total"}
    assert len(reasons) <= 31 and "other" in reasons
    assert max(len(r) for r in reasons) <= 40
    assert all(r.replace("_", "").replace(".", "").replace("-", "").isalnum() for r in reasons)


def test_consumer_lag_replace_removes_revoked_partitions():
    m = DetectorMetrics(process_metrics=False)
    m.replace_consumer_lags({("exposure.assignments", 0): 5, ("exposure.assignments", 1): 9})
    m.replace_consumer_lags({("exposure.assignments", 1): 4})
    lag = {dict(k[1])["partition"]: v for k, v in samples(m).items() if k[0] == "exposure_detector_consumer_lag"}
    assert lag == {"1": 4}


def test_last_event_time_keeps_newest_and_batch_timestamp():
    m = DetectorMetrics(process_metrics=False)
    m.record_event_time(2_000_000)
    m.record_event_time(1_000_000)
    assert value(m, "exposure_detector_last_event_timestamp_seconds") == 2000
    m.record_batch(10, 0.5, finished_at=1234.0)
    assert value(m, "exposure_detector_last_batch_timestamp_seconds") == 1234
    assert value(m, "exposure_detector_batch_size_events_count") == 1
    with m.time_batch(3):
        pass
    assert value(m, "exposure_detector_batch_duration_seconds_count") == 2


def test_experiment_cap():
    m = DetectorMetrics(process_metrics=False, max_experiments=2)
    for name in ("a", "b", "c"):
        m.update_experiment(name, HEALTHY)
    assert m.experiments() == ["a", "b"]
    assert value(m, "exposure_detector_experiments_dropped_total") == 1
    m.update_experiment("a", BREACHING)  # existing ones still update


def test_variant_cap():
    m = DetectorMetrics(process_metrics=False, max_variants=3)
    m.update_experiment("exp", observation({"experiment": "exp", "observed": {"variants": {f"v{i}": 1 for i in range(10)}}}))
    variants = {dict(k[1])["variant"]: v for k, v in samples(m).items()
                if k[0] == "exposure_detector_experiment_variant_users"}
    assert variants == {"v0": 1, "v1": 1, "v2": 1, "__other__": 7}


def test_build_info():
    m = DetectorMetrics(version="9.9.9", process_metrics=False)
    build = [dict(k[1]) for k in samples(m) if k[0] == "exposure_detector_build_info"]
    assert build[0]["version"] == "9.9.9" and build[0]["python"].startswith("3.")


async def test_aiohttp_handler_and_route_templates():
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    m = DetectorMetrics(process_metrics=False)
    m.update_experiment("subs-mvp-crm-qa", BREACHING)

    async def show(request):
        return web.json_response({"experiment": request.match_info["experiment"]})

    app = web.Application(middlewares=[m.aiohttp_middleware()])
    app.router.add_get("/metrics", m.make_aiohttp_handler())
    app.router.add_get("/v1/experiments/{experiment}", show)
    async with TestClient(TestServer(app)) as client:
        for name in ("a", "b", "c"):
            assert (await client.get(f"/v1/experiments/{name}")).status == 200
        assert (await client.get("/no/such/path")).status == 404
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    assert 'exposure_detector_experiment_enrolled_users{experiment="subs-mvp-crm-qa"} 40.0' in text
    routes = {(dict(k[1])["route"], dict(k[1])["status"]): v for k, v in samples(m).items()
              if k[0] == "exposure_detector_http_requests_total"}
    assert routes[("/v1/experiments/{experiment}", "200")] == 3
    assert routes[("unmatched", "404")] == 1
    assert not any(route.startswith("/v1/experiments/a") for route, _ in routes)
