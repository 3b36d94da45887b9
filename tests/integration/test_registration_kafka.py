"""Registration (issue 5) on the real broker: API, CLI and YAML; validation; auth; history.

Every test runs real worker processes against the local Kafka, with its own topic
prefix. What the tests check:

* a registration written through the API, the CLI or a YAML directory read at start is
  visible through `GET /v1/expectations/{exp}` within 5 s;
* detection follows the declaration: an `allowlist_breach` that fired under the old
  allowlist resolves (a `resolved` webhook, `resolved_by: registration_change`, long
  before the quiet period) once a new registration's allowlist covers the offenders;
* at least 15 bad registrations each get a 4xx naming the field, and none of them
  reaches the (prefixed) `exposure.expectations` topic;
* writes without a valid token get 401 and write nothing;
* the change history shows who, when and the diff.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime

import pytest
from harness import BOOTSTRAP, ROOT, now_ms, wait_until

pytestmark = pytest.mark.kafka

TOKEN = "test-token-7d1e"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
LONG_QUIET = "300"  # resolution must come from the registration change, not the quiet period
VISIBLE_WITHIN_S = 5.0


# ------------------------------------------------------------------------------------ helpers
def put(worker, experiment: str, body, *, headers=None, query: str = ""):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return worker.request("PUT", f"/v1/expectations/{experiment}{query}", raw, headers if headers is not None else AUTH)


def wait_visible(worker, experiment: str, pred=lambda body: True, since: float | None = None) -> float:
    """Poll GET until the registration is there (and `pred` holds); return the seconds it took."""
    t0 = time.monotonic() if since is None else since

    def seen():
        code, body = worker.get(f"/v1/expectations/{experiment}")
        return code == 200 and pred(body)

    wait_until(seen, VISIBLE_WITHIN_S + 1, 0.05, f"GET /v1/expectations/{experiment}")
    took = time.monotonic() - t0
    assert took <= VISIBLE_WITHIN_S, f"{experiment} became visible after {took:.2f} s (> {VISIBLE_WITHIN_S} s)"
    return took


def topic_records(topic: str, timeout: float = 15.0) -> list:
    """Every record of `topic` from the beginning up to its current end offsets."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    try:
        parts = wait_until(lambda: c.partitions_for_topic(topic), 10, 0.2, f"partitions of {topic}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        out, deadline = [], time.time() + timeout
        while any(c.position(tp) < end[tp] for tp in tps):
            assert time.time() < deadline, f"could not read {topic} to its end"
            for recs in c.poll(500).values():
                out.extend(recs)
        return out
    finally:
        c.close()


def events(experiment: str, users, t: int | None = None, enrolled: bool = True):
    t = now_ms() if t is None else t
    return [{"experiment": experiment, "user_id": u, "variant": "treatment" if enrolled else None,
             "enrolled": enrolled, "ts": t} for u in users]


def assert_detection_follows(worker, producer, receiver, experiment: str, update) -> None:
    """Breach under the current allowlist -> firing; `update()` widens it -> resolved (same incident)."""
    producer.send_events(events(experiment, ["qa-1", "qa-2", "out-1", "out-2", "out-3"]))
    [firing] = receiver.wait_for(
        lambda b: b.get("experiment") == experiment and b.get("rule") == "allowlist_breach" and b["status"] == "firing",
        timeout=60,
    )
    assert firing["blast_radius"]["count"] == 3
    assert sorted(firing["blast_radius"]["sample_ids"]) == ["out-1", "out-2", "out-3"]
    t_update = time.monotonic()
    update()
    [resolved] = receiver.wait_for(
        lambda b: b.get("experiment") == experiment and b["status"] == "resolved", timeout=20
    )
    took = time.monotonic() - t_update
    assert resolved["incident_id"] == firing["incident_id"]
    assert resolved["rule"] == "allowlist_breach"
    assert resolved["resolved_by"] == "registration_change", resolved
    assert took < 20  # far below the 300 s quiet period
    # Exactly one firing and one resolved for the experiment.
    time.sleep(1.0)
    mine = receiver.bodies(lambda b: b.get("experiment") == experiment)
    assert [(b["status"], b["kind"]) for b in mine] == [("firing", "firing"), ("resolved", "resolved")], mine
    # The experiment view agrees: the rule is ok under the new declaration.
    code, view = worker.get(f"/v1/experiments/{experiment}")
    assert code == 200
    [rule] = [r for r in view["rules"] if r["rule"] == "allowlist_breach"]
    assert rule["state"] == "ok", rule


# -------------------------------------------------------------------------------------- tests
def test_api_registration_visible_detection_follows_and_history(workers, producer, receiver, ns):
    w = workers(env={"DETECTOR_API_TOKEN": TOKEN, "DETECTOR_WEBHOOK_URLS": receiver.url,
                     "DETECTOR_RESOLVE_AFTER": LONG_QUIET})
    exp = "reg-api-crm-qa"
    reg = {"experiment": exp, "owner": "subscriptions", "description": "QA accounts only",
           "population": {"allowlist": ["qa-1", "qa-2"]}, "severity": "critical"}
    t0 = time.monotonic()
    code, body = put(w, exp, reg, headers={**AUTH, "X-Detector-User": "alice@example.com"})
    assert code == 201, body
    assert body["action"] == "create" and body["active_rules"] == ["allowlist_breach"]
    wait_visible(w, exp, lambda b: b["population"]["allowlist"] == ["qa-1", "qa-2"], since=t0)
    code, listing = w.get("/v1/expectations")
    assert code == 200 and [e["experiment"] for e in listing["expectations"]] == [exp]

    def update():
        new = {**reg, "population": {"allowlist": ["qa-1", "qa-2", "out-1", "out-2", "out-3"]}}
        t1 = time.monotonic()
        code, body = put(w, exp, new, headers={**AUTH, "X-Detector-User": "bob@example.com"})
        assert code == 200, body
        assert body["action"] == "update"
        wait_visible(w, exp, lambda b: len(b["population"]["allowlist"]) == 5, since=t1)

    before = now_ms()
    assert_detection_follows(w, producer, receiver, exp, update)

    # History: who, when, diff, oldest first.
    code, hist = w.get(f"/v1/expectations/{exp}/history")
    assert code == 200, hist
    entries = hist["history"]
    assert [(e["who"], e["action"], e["source"]) for e in entries] == [
        ("alice@example.com", "create", "api"), ("bob@example.com", "update", "api")]
    for e in entries:
        at = datetime.fromisoformat(e["at"].replace("Z", "+00:00"))
        assert at.tzinfo is not None
        assert abs(at.timestamp() * 1000 - before) < 120_000, e["at"]
    assert entries[0]["at"] <= entries[1]["at"]
    update_diff = json.dumps(entries[1]["diff"])
    assert "population.allowlist" in update_diff and "out-1" in update_diff, entries[1]["diff"]
    assert entries[0]["diff"], "a create shows what was declared"

    # The topic holds exactly the two writes, keyed by experiment, with who/when.
    recs = [r for r in topic_records(ns.topic("exposure.expectations")) if r.key == exp.encode()]
    assert [json.loads(r.value)["who"] for r in recs] == ["alice@example.com", "bob@example.com"]


def test_yaml_at_start_then_cli_update_detection_follows(workers, producer, receiver, ns, tmp_path):
    exp = "reg-yaml-checkout"
    exp_dir = tmp_path / "expectations"
    exp_dir.mkdir()
    (exp_dir / f"{exp}.yaml").write_text(
        f"experiment: {exp}\nowner: checkout\npopulation:\n  allowlist: [qa-1, qa-2]\nseverity: critical\n"
    )
    (exp_dir / "reg-yaml-other.yaml").write_text(
        "experiment: reg-yaml-other\nowner: search\npopulation:\n  fraction: 0.01\n"
        "variants: {control: 0.5, treatment: 0.5}\n"
    )
    t0 = time.monotonic()
    w = workers(env={"DETECTOR_API_TOKEN": TOKEN, "DETECTOR_WEBHOOK_URLS": receiver.url,
                     "DETECTOR_RESOLVE_AFTER": LONG_QUIET, "DETECTOR_EXPECTATIONS_DIR": str(exp_dir)})
    ready = time.monotonic() - t0
    took = wait_visible(w, exp, lambda b: b["owner"] == "checkout")
    wait_visible(w, "reg-yaml-other", lambda b: b["population"]["fraction"] == 0.01)
    print(f"YAML registration visible {took:.2f} s after ready ({ready:.1f} s to start)")
    code, hist = w.get(f"/v1/expectations/{exp}/history")
    assert code == 200 and hist["history"][0]["source"] == "yaml", hist

    new_file = tmp_path / "widened.yaml"
    new_file.write_text(
        f"experiment: {exp}\nowner: checkout\nseverity: critical\npopulation:\n"
        "  allowlist: [qa-1, qa-2, out-1, out-2, out-3]\n"
    )

    def update():
        t1 = time.monotonic()
        env = {k: v for k, v in os.environ.items() if k not in ("DETECTOR_API_TOKEN", "DETECTOR_URL")}
        res = subprocess.run(
            [sys.executable, "-m", "detector", "register", str(new_file), "--url", w.url, "--token", TOKEN,
             "--user", "carol"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        wait_visible(w, exp, lambda b: len(b["population"]["allowlist"]) == 5, since=t1)

    assert_detection_follows(w, producer, receiver, exp, update)
    code, hist = w.get(f"/v1/expectations/{exp}/history")
    assert [(e["who"], e["action"]) for e in hist["history"]][-1] == ("carol", "update")

    # The CLI with a wrong token is refused (exit 4) and writes nothing.
    bad = tmp_path / "bad-token.yaml"
    bad.write_text("experiment: reg-cli-denied\npopulation:\n  max_users: 10\n")
    res = subprocess.run(
        [sys.executable, "-m", "detector", "register", str(bad), "--url", w.url, "--token", "wrong"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 4, res.stdout + res.stderr
    # An invalid file fails locally (exit 1) without reaching the worker.
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("experiment: reg-cli-invalid\npopulation:\n  fraction: 1.5\n")
    res = subprocess.run(
        [sys.executable, "-m", "detector", "register", str(invalid), "--url", w.url, "--token", TOKEN],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 1 and "population.fraction" in res.stderr, res.stdout + res.stderr
    time.sleep(1.0)
    keys = {r.key for r in topic_records(ns.topic("exposure.expectations"))}
    assert keys == {exp.encode(), b"reg-yaml-other"}, keys


def test_cli_register_new_experiment_visible_within_5s(workers, tmp_path):
    w = workers(env={"DETECTOR_API_TOKEN": TOKEN})
    f = tmp_path / "cli.yaml"
    f.write_text("experiment: reg-cli-new\nowner: growth\npopulation:\n  max_users: 50\n  fraction: 0.05\n")
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "detector", "register", str(f), "--url", w.url, "--token", TOKEN],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    wait_visible(w, "reg-cli-new", lambda b: b["population"] == {"max_users": 50, "fraction": 0.05}, since=t0)


VALID = {"owner": "qa", "population": {"allowlist": ["qa-1"]}}
# (experiment in the path, body, content type, expected status, field the answer must name)
BAD = [
    ("bad-frac-type", {**VALID, "population": {"fraction": "0.1"}}, None, 422, "population.fraction"),
    ("bad-frac-high", {**VALID, "population": {"fraction": 1.5}}, None, 422, "population.fraction"),
    ("bad-frac-neg", {**VALID, "population": {"fraction": -0.1}}, None, 422, "population.fraction"),
    ("bad-variants", {**VALID, "variants": {"control": 0.5, "treatment": 0.6}}, None, 422, "variants"),
    ("bad-unknown", {**VALID, "colour": "red"}, None, 422, "colour"),
    ("bad-misplaced", {"owner": "qa", "allowlist": ["qa-1"]}, None, 422, "allowlist"),
    ("bad-big", None, None, 413, "(body)"),  # 10 MB body, filled in below
    ("bad%20key!", VALID, None, 400, "experiment"),
    ("bad-path", {**VALID, "experiment": "other-exp"}, None, 422, "experiment"),
    ("bad-window", {**VALID, "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"}, None, 422, "ends_at"),
    ("bad-max-neg", {**VALID, "population": {"max_users": -5}}, None, 422, "population.max_users"),
    ("bad-max-bool", {**VALID, "population": {"max_users": True}}, None, 422, "population.max_users"),
    ("bad-severity", {**VALID, "severity": "urgent"}, None, 422, "severity"),
    ("bad-no-tz", {**VALID, "starts_at": "2030-01-02T00:00:00"}, None, 422, "starts_at"),
    ("bad-allow-ints", {**VALID, "population": {"allowlist": [1, 2]}}, None, 422, "population.allowlist[0]"),
    ("bad-no-rules", {"owner": "qa"}, None, 422, "population"),
    ("bad-schema", {**VALID, "schema_version": 2}, None, 422, "schema_version"),
    ("bad-label", {**VALID, "labels": {"bad-label": "x"}}, None, 422, "labels.bad-label"),
    ("bad-kill-url", {**VALID, "mitigation": {"kill_url": "ftp://example.com/kill"}}, None, 422, "mitigation.kill_url"),
    ("bad-alpha", {**VALID, "alpha": 0.5}, None, 422, "alpha"),
    ("bad-segment", {**VALID, "population": {"segments": {"country": "US"}}}, None, 422, "population.segments.country"),
    ("bad-json", b'{"owner": "qa", "population": {', None, 400, "(body)"),
    ("bad-dup-key", b'{"owner": "qa", "owner": "x", "population": {"max_users": 1}}', None, 400, "(body)"),
    ("bad-ctype", VALID, "text/html", 415, "Content-Type"),
    ("bad-yaml-bool", b"owner: qa\npopulation:\n  segments: {country: [NO]}\n", "application/yaml", 422,
     "population.segments.country[0]"),
]


def test_bad_registrations_get_4xx_naming_the_field_and_never_reach_the_topic(workers, ns):
    w = workers(env={"DETECTOR_API_TOKEN": TOKEN})
    # Positive control: a valid write does reach the topic we read below.
    code, body = put(w, "good-control", VALID)
    assert code == 201, body
    wait_visible(w, "good-control")

    assert len(BAD) >= 15
    for path_exp, body, ctype, status, field in BAD:
        if path_exp == "bad-big":
            body = json.dumps({**VALID, "description": "x" * (10 * 1024 * 1024)}).encode()
        headers = {**AUTH, **({"Content-Type": ctype} if ctype else {})}
        code, answer = put(w, path_exp, body, headers=headers)
        assert 400 <= code < 500 and code == status, (path_exp, code, answer)
        assert isinstance(answer, dict), (path_exp, answer)
        fields = [e["field"] for e in answer.get("errors", [])]
        assert field in fields, (path_exp, answer)
        text = answer["error"] + " " + " ".join(f"{e['field']}: {e['message']}" for e in answer["errors"])
        assert field.rsplit(".", 1)[-1].split("[")[0].strip("()") in text, (path_exp, answer)
        # dry runs are validated the same way
        code, _ = put(w, path_exp, body, headers=headers, query="?dry_run=true")
        assert code == status, (path_exp, "dry_run", code)

    # 401 for writes without a valid token, on PUT and DELETE alike.
    no_auth = [
        {"Content-Type": "application/json"},
        {"Content-Type": "application/json", "Authorization": "Bearer wrong-token"},
        {"Content-Type": "application/json", "Authorization": f"Basic {TOKEN}"},
        {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}x"},
        {"Content-Type": "application/json", "Authorization": "Bearer"},
    ]
    for headers in no_auth:
        code, answer = put(w, "unauth-exp", VALID, headers=headers)
        assert code == 401, (headers, code, answer)
        assert answer["errors"][0]["field"] == "Authorization"
    for headers in no_auth:
        code, answer = w.request("DELETE", "/v1/expectations/good-control", None, headers)
        assert code == 401, (headers, code, answer)
    assert w.get("/v1/expectations/good-control")[0] == 200

    time.sleep(1.5)  # anything written by mistake would have reached the topic by now
    recs = topic_records(ns.topic("exposure.expectations"))
    assert [r.key for r in recs] == [b"good-control"], [r.key for r in recs]
    code, listing = w.get("/v1/expectations")
    assert [e["experiment"] for e in listing["expectations"]] == ["good-control"]


def test_risky_change_needs_confirmation_and_delete_is_visible(workers, producer, ns):
    w = workers(env={"DETECTOR_API_TOKEN": TOKEN})
    exp = "reg-risky"
    risky = {"owner": "qa", "population": {"allowlist": ["qa-1"], "fraction": 0.5}}
    code, body = put(w, exp, risky)
    assert code == 409 and body["risks"][0]["code"] == "allowlist_with_large_fraction", body
    code, body = put(w, exp, risky, query="?dry_run=true")
    assert code == 200 and body["requires_confirmation"] is True
    time.sleep(0.5)
    assert w.get(f"/v1/expectations/{exp}")[0] == 404
    code, body = put(w, exp, risky, query="?confirm=true")
    assert code == 201, body
    wait_visible(w, exp)

    # Deleting an experiment with traffic needs confirmation too; a confirmed delete disappears within 5 s.
    producer.send_events(events(exp, ["qa-1"]))
    wait_until(lambda: w.get(f"/v1/experiments/{exp}")[1].get("observed") is True, 20, 0.1, "observation")
    code, body = w.request("DELETE", f"/v1/expectations/{exp}", None, AUTH)
    assert code == 409 and body["risks"][0]["code"] == "delete_with_traffic", body
    t0 = time.monotonic()
    code, body = w.request("DELETE", f"/v1/expectations/{exp}?confirm=true", None, AUTH)
    assert code == 200, body
    wait_until(lambda: w.get(f"/v1/expectations/{exp}")[0] == 404, VISIBLE_WITHIN_S, 0.05, "deletion visible")
    assert time.monotonic() - t0 <= VISIBLE_WITHIN_S
    code, hist = w.get(f"/v1/expectations/{exp}/history")
    assert [e["action"] for e in hist["history"]] == ["create", "delete"], hist
