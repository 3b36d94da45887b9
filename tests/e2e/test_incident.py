"""The incident end to end on the real broker: simulate, detect, page, blast radius, timeline.

`detector simulate incident`: a QA experiment for 5 allowlisted accounts is misconfigured to
100% and 250 real users enroll, among healthy experiments. Done when:
- the blast-radius CSV holds exactly those 250 user ids (and none of the QA accounts);
- the incident's timeline lists the first offending event, the detection and the delivered
  notification, in that order;
- detection comes within 2 s of the first offending event, measured from the moment the
  simulator produced that event to (a) the worker opening the incident and (b) our webhook
  receiver getting the page.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import urllib.request
from types import SimpleNamespace

from harness import BOOTSTRAP, ROOT, wait_until

TOKEN = "e2e-token"
QA = "crm-winback-email-qa"


def _get_text(url: str) -> tuple[int, str, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})  # reads need a token too
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read().decode(), dict(resp.headers)


def test_simulated_incident_end_to_end(workers, receiver, ns, tmp_path):
    w = workers(env={"DETECTOR_WEBHOOK_URLS": receiver.url, "DETECTOR_API_TOKEN": TOKEN})
    # The command a user runs (README walkthrough), with the ground truth printed as JSON.
    run = subprocess.run([sys.executable, "-m", "detector", "simulate", "incident", "--bootstrap", BOOTSTRAP,
                          "--prefix", ns.prefix, "--url", w.url, "--qa-users", "5", "--others", "250", "--json"],
                         cwd=ROOT, env={**os.environ, **ns.env(), "DETECTOR_API_TOKEN": TOKEN}, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    sc = SimpleNamespace(**json.loads(run.stdout))
    assert "someone sets the rollout of crm-winback-email-qa to 100%" in run.stderr
    assert sc.registrations_seen_by_worker
    assert len(sc.offenders) == 250 and len(set(sc.offenders)) == 250
    assert not set(sc.offenders) & set(sc.allowlist)

    # ---- the page, and how fast it came -------------------------------------------------
    [page] = receiver.wait_for(lambda b: b.get("experiment") == QA and b.get("rule") == "allowlist_breach"
                               and b.get("status") == "firing", timeout=30)
    received_at = next(r["at"] for r in receiver.requests if r["body"] is page)
    webhook_latency = received_at - sc.first_offending_sent_at
    assert webhook_latency < 2.0, f"page received {webhook_latency:.3f} s after the first offending event"
    # Nothing else pages: the healthy experiments stay quiet.
    others = {(b["experiment"], b["rule"]) for b in receiver.bodies()} - {(QA, "allowlist_breach"), (QA, "max_users_exceeded")}
    assert not others, others

    # ---- incidents ----------------------------------------------------------------------
    code, listing = w.get(f"/v1/incidents?experiment={QA}")
    assert code == 200
    rules = {i["rule"]: i for i in listing["incidents"]}
    assert set(rules) == {"allowlist_breach", "max_users_exceeded"}, listing
    iid = rules["allowlist_breach"]["id"]
    assert iid == page["incident_id"]

    def delivered():
        code, inc = w.get(f"/v1/incidents/{iid}")
        kinds = [e["kind"] for e in inc.get("timeline", [])] if code == 200 else []
        return inc if "delivery" in kinds else None

    inc = wait_until(delivered, 15, 0.1, "delivery on the timeline")
    assert inc["experiment"] == QA and inc["rule"] == "allowlist_breach" and inc["status"] == "firing"
    tl = inc["timeline"]
    kinds = [e["kind"] for e in tl]
    first = kinds.index("first_offending_event")
    detection = kinds.index("detection")
    delivery = next(i for i, e in enumerate(tl) if e["kind"] == "delivery" and e["detail"]["status"] == "delivered")
    assert first < detection < delivery, kinds
    assert all(set(e) >= {"at", "kind", "detail"} for e in tl)
    assert [e["at_ms"] for e in tl] == sorted(e["at_ms"] for e in tl)
    assert tl[delivery]["detail"]["http_status"] == 200
    # The incident opened on the worker's clock within 2 s of the first offending event's production.
    opened_latency = tl[detection]["at_ms"] / 1000 - sc.first_offending_sent_at  # event time: ~0
    assert opened_latency < 2.0
    from datetime import datetime

    started = datetime.fromisoformat(inc["started_at"].replace("Z", "+00:00")).timestamp()
    assert started - sc.first_offending_sent_at < 2.0, f"incident opened {started - sc.first_offending_sent_at:.3f} s after"
    assert inc["blast_radius"]["count"] == 250
    assert inc["deliveries"] and inc["deliveries"][0]["status"] == "delivered"

    # ---- blast radius: CSV via HTTP and via the CLI, JSON pages ----------------------------
    status, text, headers = _get_text(f"{w.url}/v1/experiments/{QA}/blast-radius?format=csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["user_id", "first_seen_at", "variant", "rules"]
    ids = [r[0] for r in rows[1:]]
    assert len(ids) == 250 and set(ids) == set(sc.offenders)
    assert all("allowlist_breach" in r[3].split(";") for r in rows[1:])
    assert all(r[2] in ("control", "treatment") and r[1].endswith("Z") for r in rows[1:])

    out = tmp_path / "affected.csv"
    cli = subprocess.run([sys.executable, "-m", "detector", "blast-radius", QA, "--format", "csv", "--url", w.url,
                          "--token", TOKEN, "--output", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert "250 user(s)" in cli.stderr
    assert {r[0] for r in list(csv.reader(out.open()))[1:]} == set(sc.offenders)

    cli = subprocess.run([sys.executable, "-m", "detector", "blast-radius", QA, "--format", "json", "--url", w.url,
                          "--token", TOKEN],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    doc = json.loads(cli.stdout)
    assert doc["count"] == 250 and [u["user_id"] for u in doc["users"]] == ids

    seen, cursor = [], None
    while True:
        code, body = w.get(f"/v1/experiments/{QA}/blast-radius?limit=100" + (f"&cursor={cursor}" if cursor else ""))
        assert code == 200, body
        seen += [u["user_id"] for u in body["users"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == ids  # the same order as the CSV, no duplicates across pages

    code, body = w.get(f"/v1/incidents/{iid}/blast-radius?limit=1000")
    assert code == 200 and body["rule"] == "allowlist_breach" and body["count"] == 250

    # ---- the post-mortem, then ack and resolve -------------------------------------------------
    status, md, headers = _get_text(f"{w.url}/v1/incidents/{iid}?format=md")
    assert headers["Content-Type"].startswith("text/markdown")
    assert md.index("First offending event") < md.index("| Detected |") < md.index("Notification delivery")

    code, body = w.request("POST", f"/v1/incidents/{iid}/ack", b'{"who": "alice"}',
                           {"Content-Type": "application/json"})
    assert code == 401
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    code, body = w.request("POST", f"/v1/incidents/{iid}/ack", b'{"who": "alice"}', auth)
    assert code == 200 and body["action"] == "acknowledged", body
    assert body["incident"]["acknowledged_by"] == "alice"
    code, body = w.request("POST", f"/v1/incidents/{iid}/resolve", b"",
                           {"Authorization": f"Bearer {TOKEN}", "X-Detector-User": "bob"})
    assert code == 200 and body["action"] == "resolved", body
    kinds = [e["kind"] for e in body["incident"]["timeline"]]
    assert kinds.index("acknowledged") < kinds.index("resolution")
    receiver.wait_for(lambda b: b.get("id") == f"{iid}:resolved", timeout=15)
    print(f"\nE2E: page {webhook_latency * 1000:.0f} ms after the first offending event; "
          f"incident opened {(started - sc.first_offending_sent_at) * 1000:.0f} ms after; {sc.events} events")
