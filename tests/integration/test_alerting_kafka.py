"""Alerting (issue 4) on the real broker, with real HTTP receivers on loopback.

* The incident scenario (an allowlist of 5 test users, then ~250 other users enroll) gives
  exactly one firing notification per configured sink (generic webhook, Alertmanager
  webhook body, PagerDuty Events v2, Slack), then exactly one resolved notification once
  no new out-of-target user has enrolled for the (short) quiet period.
* A receiver that answers 500 for a while and then 200 gets the notification exactly once,
  every attempt carrying the same `webhook-id`.
* A worker killed with SIGKILL after the outbox write and before the send (receiver down)
  delivers after a restart, exactly once, with the original `webhook-id`.
* Signatures verify with the reference `standardwebhooks` package.
* Bonus: the worker pushes to a real Alertmanager (Debian `prometheus-alertmanager`).

Timings come from a temp alerting.yaml (group_wait, quiet period, backoff) so the tests
stay short; the quiet period also comes through DETECTOR_RESOLVE_AFTER in one test.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from harness import BOOTSTRAP, Peer, Receiver, free_port, now_ms, require_binary, wait_until
from standardwebhooks.webhooks import Webhook

pytestmark = pytest.mark.kafka

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PD_KEY = "R0UTINGKEY0123456789abcdef012345"
OPS_TOKEN = "ops-bearer-token"


def alerting_yaml(tmp_path: Path, sinks: dict, *, quiet: str = "4s", routes: list | None = None,
                  extra_lifecycle: dict | None = None) -> Path:
    cfg = {
        "lifecycle": {"group_wait": "200ms", "group_interval": "1s", "repeat_interval": "4h",
                      "resolve_quiet_period": quiet, "refresh_interval": None, **(extra_lifecycle or {})},
        "delivery": {"timeout": "5s", "initial_backoff": "200ms", "multiplier": 1.5, "jitter": 0.2,
                     "max_backoff": "1s", "deadline": "10m"},
        "sinks": sinks,
    }
    if routes is not None:
        cfg["routes"] = routes
    path = tmp_path / "alerting.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def verify_signature(rec: dict) -> None:
    """The reference implementation accepts our headers and body."""
    Webhook(SECRET).verify(rec["raw"], {k.lower(): v for k, v in rec["headers"].items()})


def hdr(rec: dict, name: str) -> str | None:
    return {k.lower(): v for k, v in rec["headers"].items()}.get(name)


def accepted(receiver: Receiver, path: str | None = None, nid_part: str = "") -> list[dict]:
    with receiver._lock:
        return [r for r in receiver.requests
                if (path is None or r["path"] == path) and nid_part in (hdr(r, "webhook-id") or "")]


def attempts(receiver: Receiver, nid: str) -> list[dict]:
    with receiver._lock:
        return [r for r in receiver.attempts if hdr(r, "webhook-id") == nid]


def scenario_events(experiment: str, users, t: int | None = None) -> list[dict]:
    t = now_ms() if t is None else t
    return [{"experiment": experiment, "user_id": u, "variant": "treatment", "ts": t} for u in users]


# ------------------------------------------------------------------- the incident scenario
def test_incident_scenario_one_firing_then_one_resolved_per_sink(workers, producer, tmp_path):
    receiver = Receiver()
    base = f"http://127.0.0.1:{receiver.port}"
    paths = {"ops-webhook": "/ops", "am-receiver": "/am", "pagerduty": "/pd/v2/enqueue", "slack": "/slack"}
    sinks = {
        "ops-webhook": {"type": "webhook", "url": base + paths["ops-webhook"], "secret_env": "DETECTOR_WEBHOOK_SECRET",
                        "token_env": "OPS_WEBHOOK_TOKEN"},
        "am-receiver": {"type": "alertmanager_webhook", "url": base + paths["am-receiver"],
                        "secret_env": "DETECTOR_WEBHOOK_SECRET"},
        "pagerduty": {"type": "pagerduty", "url": base + paths["pagerduty"], "routing_key_env": "PAGERDUTY_ROUTING_KEY"},
        "slack": {"type": "slack", "url_env": "SLACK_WEBHOOK_URL"},
    }
    routes = [{"match": {"severity": "critical"}, "sinks": list(sinks)}, {"sinks": ["ops-webhook"]}]
    cfg = alerting_yaml(tmp_path, sinks, quiet="4s", routes=routes)
    exp_dir = tmp_path / "expectations"
    exp_dir.mkdir()
    exp = "subs-mvp-crm-qa"
    testers = [f"qa-{i:03d}" for i in range(1, 6)]
    (exp_dir / "crm.yaml").write_text(yaml.safe_dump({
        "experiment": exp, "owner": "subscriptions", "description": "QA of the CRM flow, test accounts only",
        "population": {"allowlist": testers}, "variants": {"control": 0.5, "treatment": 0.5},
        "severity": "critical", "labels": {"team": "crm"},
    }))
    w = workers(env={
        "DETECTOR_ALERTING_CONFIG": str(cfg), "DETECTOR_EXPECTATIONS_DIR": str(exp_dir),
        "DETECTOR_WEBHOOK_SECRET": SECRET, "OPS_WEBHOOK_TOKEN": OPS_TOKEN, "PAGERDUTY_ROUTING_KEY": PD_KEY,
        "SLACK_WEBHOOK_URL": base + paths["slack"], "DETECTOR_EXTERNAL_URL": "http://detector.test",
    })
    wait_until(lambda: w.get(f"/v1/expectations/{exp}")[0] == 200, 10, 0.1, "registration")

    # The QA phase: only the allowlisted testers, alternating variants. No alert.
    producer.send_events({"experiment": exp, "user_id": u, "variant": ("control", "treatment")[i % 2], "ts": now_ms()}
                         for i, u in enumerate(testers))
    time.sleep(1.5)
    assert receiver.attempts == [], "no alert while only allowlisted users enroll"

    # The incident: the experiment goes to 100 %, 250 other users enroll over ~1.5 s.
    t_first = time.time()
    others = [f"user-{i:04d}" for i in range(250)]
    for chunk in range(5):
        producer.send_events({"experiment": exp, "user_id": u, "variant": ("control", "treatment")[i % 2],
                              "ts": now_ms()} for i, u in enumerate(others[chunk * 50:(chunk + 1) * 50]))
        time.sleep(0.3)
    t_last = time.time()

    def per_sink(kind: str) -> dict[str, list]:
        return {name: accepted(receiver, p, kind) for name, p in paths.items()}

    wait_until(lambda: all(per_sink(":firing:").values()), 40, 0.05, "a firing notification on every sink")
    first_at = min(r["at"] for rs in per_sink(":firing:").values() for r in rs)
    wait_until(lambda: all(per_sink(":resolved").values()), 40, 0.1, "a resolved notification on every sink")
    resolved_at = max(r["at"] for rs in per_sink(":resolved").values() for r in rs)
    time.sleep(2.0)  # anything extra (a repeat, a duplicate) would arrive in this window

    firing, resolved = per_sink(":firing:"), per_sink(":resolved")
    for name in paths:
        assert len(firing[name]) == 1, (name, [hdr(r, "webhook-id") for r in firing[name]])
        assert len(resolved[name]) == 1, (name, [hdr(r, "webhook-id") for r in resolved[name]])
    assert {len(accepted(receiver, p)) for p in paths.values()} == {2}, "nothing but one firing and one resolved"
    assert len(receiver.attempts) == 8, "no retries either: every receiver answered 200"
    # Both notifications are about one incident: allowlist_breach of the experiment.
    fid = hdr(firing["ops-webhook"][0], "webhook-id")
    incident_id = fid.split(":")[0]
    assert fid == f"{incident_id}:firing:1"
    for name in paths:
        assert hdr(firing[name][0], "webhook-id") == fid
        assert hdr(resolved[name][0], "webhook-id") == f"{incident_id}:resolved"
    assert first_at - t_first < 5, f"first page {first_at - t_first:.2f} s after the first offending event"
    assert resolved_at - t_last >= 4 - 0.5, "resolved only after the quiet period"

    # Generic webhook: exposure-alert/v1, signed, bearer token.
    f_ops, r_ops = firing["ops-webhook"][0], resolved["ops-webhook"][0]
    for rec in (f_ops, r_ops):
        verify_signature(rec)
        assert hdr(rec, "authorization") == f"Bearer {OPS_TOKEN}"
    fb, rb = f_ops["body"], r_ops["body"]
    assert fb["schema"] == "exposure-alert/v1" and fb["status"] == "firing" and fb["rule"] == "allowlist_breach"
    assert fb["experiment"] == exp and fb["severity"] == "critical" and fb["owner"] == "subscriptions"
    assert fb["labels"] == {"team": "crm"} and fb["id"] == fid
    assert fb["links"]["incident"] == f"http://detector.test/incidents/{incident_id}"
    assert fb["links"]["api"] == f"http://detector.test/v1/incidents/{incident_id}"
    assert rb["status"] == "resolved" and rb["resolved_by"] == "quiet_period" and rb["ended_at"]
    assert rb["blast_radius"]["count"] == 250, rb["blast_radius"]
    assert set(rb["blast_radius"]["sample_ids"]) <= set(others) and rb["blast_radius"]["sample_ids"]

    # Alertmanager webhook body (version 4), signed.
    f_am, r_am = firing["am-receiver"][0], resolved["am-receiver"][0]
    verify_signature(f_am)
    verify_signature(r_am)
    assert f_am["body"]["version"] == "4" and f_am["body"]["status"] == "firing"
    assert r_am["body"]["status"] == "resolved" and r_am["body"]["alerts"][0]["status"] == "resolved"
    labels = f_am["body"]["alerts"][0]["labels"]
    assert labels["alertname"] == "ExposureAnomaly" and labels["experiment"] == exp
    assert labels["rule"] == "allowlist_breach" and labels["severity"] == "critical"
    from detector.alerts.fingerprint import label_fingerprint_hex
    assert f_am["body"]["alerts"][0]["fingerprint"] == label_fingerprint_hex(labels)
    assert r_am["body"]["alerts"][0]["fingerprint"] == f_am["body"]["alerts"][0]["fingerprint"]

    # PagerDuty Events v2: trigger then resolve with one stable dedup_key.
    pt, pr = firing["pagerduty"][0]["body"], resolved["pagerduty"][0]["body"]
    assert pt["event_action"] == "trigger" and pr["event_action"] == "resolve"
    assert pt["routing_key"] == pr["routing_key"] == PD_KEY
    assert pt["dedup_key"] == pr["dedup_key"] == incident_id
    assert pt["payload"]["severity"] == "critical" and exp in pt["payload"]["summary"]

    # Slack: text plus blocks.
    st, sr = firing["slack"][0]["body"], resolved["slack"][0]["body"]
    assert "[FIRING]" in st["text"] and exp in st["text"] and st["blocks"]
    assert "[RESOLVED]" in sr["text"] and sr["blocks"]

    # The incident view records one delivery per sink and notification.
    code, inc = w.get(f"/v1/incidents/{incident_id}")
    assert code == 200 and inc["status"] == "resolved", inc
    wait_until(lambda: len(w.get(f"/v1/incidents/{incident_id}")[1].get("deliveries", [])) >= 8, 10, 0.2,
               "deliveries on the incident view")
    deliveries = w.get(f"/v1/incidents/{incident_id}")[1]["deliveries"]
    assert sorted((d["sink"], d["notification_status"]) for d in deliveries) == sorted(
        (s, st) for s in paths for st in ("firing", "resolved"))
    code, metrics = w.get("/metrics")
    assert 'exposure_detector_notifications_total{outcome="sent",sink="slack"} 2.0' in metrics


# ------------------------------------------------------------------------------- fault tests
def test_receiver_500_for_a_while_then_200_gets_it_exactly_once(workers, producer, ns, tmp_path):
    receiver = Receiver(script=lambda i: 500 if i < 4 else 200)
    cfg = alerting_yaml(tmp_path, {"hook": {"type": "webhook", "url": receiver.url}}, quiet="300s")
    w = workers(env={"DETECTOR_ALERTING_CONFIG": str(cfg), "DETECTOR_WEBHOOK_SECRET": SECRET})
    producer.send_events(scenario_events("flaky-receiver-exp", ["u1", "u2", "u3"]))
    [body] = receiver.wait_for(lambda b: b.get("experiment") == "flaky-receiver-exp", timeout=60)
    nid = body["id"]
    time.sleep(2.5)  # a second delivery would show up here
    tries = attempts(receiver, nid)
    assert len(tries) == 5, [(hdr(t, "webhook-id"), t["at"]) for t in tries]
    assert len(accepted(receiver, nid_part=nid)) == 1
    assert len(receiver.requests) == 1 and len(receiver.attempts) == 5
    # Every attempt: same id, same body, fresh valid signature; backoff between attempts.
    assert {t["raw"] for t in tries} == {tries[0]["raw"]}
    for t in tries:
        verify_signature(t)
    gaps = [b["at"] - a["at"] for a, b in zip(tries, tries[1:])]
    assert all(g >= 0.1 for g in gaps), gaps
    code, inc = w.get(f"/v1/incidents/{body['incident_id']}")
    wait_until(lambda: w.get(f"/v1/incidents/{body['incident_id']}")[1].get("deliveries"), 10, 0.2, "delivery")
    [d] = w.get(f"/v1/incidents/{body['incident_id']}")[1]["deliveries"]
    assert d["status"] == "delivered" and d["attempts"] == 5 and d["http_status"] == 200, d


class ReceiverOnPort(Receiver):
    """The harness receiver, on a port chosen beforehand (so it can be 'down' first)."""

    def __init__(self, port: int, script=None) -> None:
        self._fixed_port = port
        super().__init__(script)

    def _serve(self) -> None:
        self.port = self._fixed_port
        self.url = f"http://127.0.0.1:{self.port}/hook"
        super()._serve()


def outbox_notifications(ns, timeout: float = 1.0) -> list[dict]:
    from kafka import KafkaConsumer

    c = KafkaConsumer(ns.topic("exposure.alerts"), bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=int(timeout * 1000))
    try:
        return [json.loads(r.value) for r in c]
    finally:
        c.close()


def test_sigkill_between_outbox_write_and_send_delivers_after_restart_with_same_id(workers, producer, ns, tmp_path):
    port = free_port()  # nothing listens here yet: the receiver is down
    url = f"http://127.0.0.1:{port}/hook"
    cfg = alerting_yaml(tmp_path, {"hook": {"type": "webhook", "url": url}}, quiet="300s")
    # Faust's default session timeout (60 s) is how long the group waits for the killed member
    # before the restarted worker gets its partitions; 10 s keeps the test short.
    env = {"DETECTOR_ALERTING_CONFIG": str(cfg), "DETECTOR_WEBHOOK_SECRET": SECRET, "BROKER_SESSION_TIMEOUT": "10"}
    w1 = workers(env=env, name="before-kill")
    producer.send_events(scenario_events("kill-exp", ["u1", "u2"]))

    # The notification is in the outbox...
    notes = wait_until(lambda: [n for n in outbox_notifications(ns) if n["experiment"] == "kill-exp"], 60, 0.3,
                       "the firing notification in exposure.alerts")
    [note] = notes
    nid = note["id"]
    assert nid.endswith(":firing:1")
    # ...and the courier is retrying against the dead receiver.
    wait_until(lambda: "retry in" in w1.tail(400) and nid in w1.tail(400), 20, 0.2, "a failed delivery attempt")
    w1.kill(signal.SIGKILL)
    assert w1.proc.returncode == -signal.SIGKILL

    receiver = ReceiverOnPort(port)
    assert receiver.url == url
    t0 = time.monotonic()
    w2 = workers(env=env, name="after-restart", wait_ready=False)
    [body] = receiver.wait_for(lambda b: b.get("experiment") == "kill-exp", timeout=90)
    took = time.monotonic() - t0
    assert body["id"] == nid
    time.sleep(3.0)  # a duplicate (from the outbox or a re-derived notification) would arrive here
    assert len(receiver.attempts) == 1, [hdr(r, "webhook-id") for r in receiver.attempts]
    [rec] = receiver.requests
    assert hdr(rec, "webhook-id") == nid
    verify_signature(rec)
    # The outbox still holds the one notification with that id (re-derived copies would share it).
    assert {n["id"] for n in outbox_notifications(ns) if n["experiment"] == "kill-exp"} == {nid}
    print(f"delivered {took:.1f} s after the restart began")
    assert w2.proc.poll() is None, w2.tail()
    w2.kill()  # its ingest group is still waiting out the killed member's session: no need to wait


def test_quiet_period_from_environment_resolves(workers, producer, receiver, tmp_path):
    """DETECTOR_RESOLVE_AFTER / DETECTOR_GROUP_WAIT reach the lifecycle (no alerting.yaml needed)."""
    w = workers(env={"DETECTOR_WEBHOOK_URLS": receiver.url, "DETECTOR_RESOLVE_AFTER": "2",
                     "DETECTOR_GROUP_WAIT": "0.1"})
    producer.send_events(scenario_events("env-quiet-exp", ["u1"]))
    [firing] = receiver.wait_for(lambda b: b.get("experiment") == "env-quiet-exp", timeout=60)
    [resolved] = receiver.wait_for(lambda b: b.get("experiment") == "env-quiet-exp" and b["status"] == "resolved",
                                   timeout=15)
    assert resolved["incident_id"] == firing["incident_id"] and resolved["resolved_by"] == "quiet_period"
    t_fire = [r["at"] for r in receiver.requests if r["body"]["id"] == firing["id"]][0]
    t_res = [r["at"] for r in receiver.requests if r["body"]["id"] == resolved["id"]][0]
    assert 1.5 <= t_res - t_fire <= 6, t_res - t_fire  # default config/alerting.yaml says 5 minutes


# ---------------------------------------------------------------- bonus: a real Alertmanager


@pytest.fixture
def alertmanager(tmp_path):
    binary = require_binary("prometheus-alertmanager", "alertmanager", package="prometheus-alertmanager")
    cfg = tmp_path / "am.yml"
    cfg.write_text(yaml.safe_dump({"route": {"receiver": "null", "group_wait": "1s"}, "receivers": [{"name": "null"}]}))
    port = free_port()
    peer = Peer(
        [binary, f"--config.file={cfg}", f"--storage.path={tmp_path / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        tmp_path / "alertmanager.log", f"http://127.0.0.1:{port}", "alertmanager",
    )
    try:
        yield peer.url
    finally:
        peer.stop()


@pytest.mark.alertmanager
def test_worker_pushes_to_real_alertmanager_and_resolves(alertmanager, workers, producer, tmp_path):
    cfg = alerting_yaml(tmp_path, {"am": {"type": "alertmanager", "url_env": "ALERTMANAGER_URL"}}, quiet="3s",
                        extra_lifecycle={"refresh_interval": "1s"})
    w = workers(env={"DETECTOR_ALERTING_CONFIG": str(cfg), "ALERTMANAGER_URL": alertmanager,
                     "DETECTOR_EXTERNAL_URL": "http://detector.test"})
    producer.send_events(scenario_events("am-push-exp", ["u1", "u2"]))

    def ours(active_only=True):
        q = "" if active_only else "?active=true&inhibited=true&silenced=true&unprocessed=true"
        with urllib.request.urlopen(alertmanager + "/api/v2/alerts" + q, timeout=5) as r:
            return [a for a in json.loads(r.read()) if a["labels"].get("experiment") == "am-push-exp"]

    [alert] = wait_until(ours, 30, 0.2, "our alert in Alertmanager")
    assert alert["labels"]["alertname"] == "ExposureAnomaly"
    assert alert["labels"]["rule"] == "unregistered"
    assert alert["status"]["state"] == "active"
    iid = alert["annotations"]["incident_id"]
    assert alert["generatorURL"] == f"http://detector.test/incidents/{iid}"
    # Resolve after the quiet period: endsAt set, the alert leaves the active listing.
    wait_until(lambda: not ours(), 20, 0.2, "the alert resolved in Alertmanager")
    code, inc = w.get(f"/v1/incidents/{iid}")
    assert code == 200 and inc["status"] == "resolved"
