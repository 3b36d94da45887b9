"""Day one on a live stream, end to end on the real broker (issue 16).

300 experiments nobody registered yet, plus one registered QA experiment whose allowlist is
breached. Done when:
- the webhook receiver gets at most a handful of notifications in the first minute: one
  digest listing the 300 experiments with their observed exposure, and the breach on its own,
  within 2 s of its first offending event (the digest never delays it);
- every `unregistered` incident is still recorded (`/v1/incidents`), and `GET /v1/discovery`
  lists the 300 (JSON and CSV);
- `detector discover --write DIR` writes 300 drafts that `detector register --dry-run` and then
  `detector register` accept, after which the digest resolves (one `resolved` notification).
Timings are shortened by configuration (digest group_wait 3 s).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from harness import ROOT, wait_until

pytestmark = pytest.mark.kafka

TOKEN = "day-one-token"
N_EXPERIMENTS = 300
QA = "crm-qa-allowlist"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def _alerting(tmp_path: Path) -> Path:
    cfg = {
        "lifecycle": {"group_wait": "200ms", "group_interval": "1s", "repeat_interval": "4h",
                      "resolve_quiet_period": "10m", "refresh_interval": None},
        "delivery": {"timeout": "5s", "initial_backoff": "200ms", "max_backoff": "1s", "deadline": "10m"},
        "notifications": {
            "unregistered": "digest",
            "grouping": [{"match": {"rule": "unregistered"}, "group_by": ["owner"], "group_wait": "3s",
                          "group_interval": "2m", "repeat_interval": "1h"}],
            "rate_limit": {"max": 10, "per": "10m"},
        },
    }
    path = tmp_path / "alerting.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _flood(rng: random.Random) -> list[dict]:
    """300 experiments, 40-120 eligible users each, 20-60% enrolled, two or three variants."""
    events = []
    now = int(time.time() * 1000)
    for i in range(N_EXPERIMENTS):
        exp = f"dayone-exp-{i:03d}"
        share = rng.choice([0.2, 0.3, 0.5, 0.6])
        variants = ["control", "treatment"] if i % 3 else ["a", "b", "c"]
        for u in range(rng.randint(40, 120)):
            enrolled = rng.random() < share
            events.append({"experiment": exp, "user_id": f"{exp}-u{u}", "enrolled": enrolled,
                           "variant": rng.choice(variants) if enrolled else None, "ts": now,
                           "attributes": {"platform": rng.choice(["ios", "android"]), "country": "BR"}})
    rng.shuffle(events)
    return events


def _cli(*args: str, w) -> subprocess.CompletedProcess:
    env = {**os.environ, "DETECTOR_URL": w.url, "DETECTOR_API_TOKEN": TOKEN}
    return subprocess.run([sys.executable, "-m", "detector", *args], cwd=ROOT, env=env, capture_output=True, check=False,
                          text=True, timeout=300)


def test_day_one_digest_breach_discover_register(workers, producer, receiver, tmp_path):
    w = workers(env={"DETECTOR_ALERTING_CONFIG": str(_alerting(tmp_path)), "DETECTOR_UNREGISTERED": "digest",
                     "DETECTOR_WEBHOOK_URLS": receiver.url, "DETECTOR_API_TOKEN": TOKEN})
    reg = {"experiment": QA, "owner": "crm", "population": {"allowlist": ["qa-1", "qa-2", "qa-3"]},
           "severity": "critical"}
    code, body = w.request("PUT", f"/v1/expectations/{QA}", json.dumps(reg).encode(), AUTH)
    assert code in (200, 201), body
    wait_until(lambda: w.get(f"/v1/experiments/{QA}")[0] == 200, 20, 0.1, "registration visible")

    t0 = time.time()
    events = _flood(random.Random(16))
    now = int(t0 * 1000)
    events += [{"experiment": QA, "user_id": f"qa-{i}", "variant": "treatment", "ts": now} for i in (1, 2, 3)]
    producer.send_events(events)
    time.sleep(1.0)  # the flood is being judged; now the breach
    breach_sent_at = time.time()
    producer.send_events([{"experiment": QA, "user_id": "real-customer-1", "variant": "treatment",
                           "ts": int(breach_sent_at * 1000)}])

    [page] = receiver.wait_for(lambda b: b.get("rule") == "allowlist_breach", timeout=30)
    received = next(r["at"] for r in receiver.requests if r["body"] is page)
    assert received - breach_sent_at < 2.0, f"breach paged {received - breach_sent_at:.3f} s after its event"
    assert page["experiment"] == QA and page["status"] == "firing"

    [digest] = receiver.wait_for(lambda b: str(b.get("id", "")).startswith("digest:"), timeout=30)
    d = digest["observed"]["digest"]
    assert digest["status"] == "firing" and digest["rule"] == "unregistered"
    assert d["count"] == N_EXPERIMENTS and d["listed"] == N_EXPERIMENTS
    listed = {e["experiment"]: e for e in d["experiments"]}
    assert set(listed) == {f"dayone-exp-{i:03d}" for i in range(N_EXPERIMENTS)}
    one = listed["dayone-exp-001"]
    assert one["eligible_users"] >= 1 and 0 <= one["enrolled_users"] <= one["eligible_users"] and one["variants"]

    # ---- incidents recorded, discovery served -----------------------------------------------
    code, listing = w.get("/v1/incidents?rule=unregistered&limit=1000")
    assert code == 200 and len(listing["incidents"]) == N_EXPERIMENTS
    code, disc = w.get("/v1/discovery")
    assert code == 200 and disc["count"] == N_EXPERIMENTS
    assert all(e["fraction_ci95"][0] <= e["fraction"] <= e["fraction_ci95"][1] for e in disc["experiments"])
    assert all(e["segments_seen"].get("country") for e in disc["experiments"])
    code, csv_text = w.get("/v1/discovery?format=csv&all=true")
    assert code == 200 and len(csv_text.strip().splitlines()) == N_EXPERIMENTS + 2  # header, 300, the QA one

    drafts = tmp_path / "drafts"
    run = _cli("discover", "--write", str(drafts), w=w)
    assert run.returncode == 0, run.stderr
    files = sorted(drafts.glob("*.yaml"))
    assert len(files) == N_EXPERIMENTS and "REVIEW" in files[0].read_text()
    run = _cli("register", str(drafts), "--dry-run", w=w)
    assert run.returncode == 0, run.stdout + run.stderr

    # ---- the first minute: a handful of notifications, not 300 -----------------------------------
    time.sleep(max(0.0, t0 + 60 - time.time()))
    first_minute = receiver.bodies()
    assert len(first_minute) <= 5, [b.get("id") for b in first_minute]
    assert [b["rule"] for b in first_minute if b["status"] == "firing" and not b["id"].startswith("digest:")] == \
        ["allowlist_breach"]
    assert len([b for b in first_minute if b["id"].startswith("digest:")]) == 1

    # ---- register the drafts: the unregistered incidents, and so the digest, resolve -------------
    run = _cli("register", str(drafts), w=w)
    assert run.returncode == 0, run.stdout + run.stderr
    resolved = receiver.wait_for(lambda b: b.get("id") == f"{digest['id']}:resolved", timeout=60)[0]
    assert resolved["status"] == "resolved"
    code, listing = w.get("/v1/incidents?rule=unregistered&status=firing&limit=1000")
    assert code == 200 and listing["incidents"] == []
    code, disc = w.get("/v1/discovery")
    assert code == 200 and disc["count"] == 0
    # registering from the drafts raised no breach: the only pages are the QA breach's
    firing = [b for b in receiver.bodies() if b["status"] == "firing" and not b["id"].startswith("digest:")]
    assert {b["experiment"] for b in firing} == {QA}, [b["id"] for b in firing]
    print(f"\nDAY ONE: breach paged {(received - breach_sent_at) * 1000:.0f} ms after its event; "
          f"{len(first_minute)} notifications in the first minute for {N_EXPERIMENTS} unregistered experiments")
