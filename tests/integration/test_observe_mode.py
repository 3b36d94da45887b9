"""Observe mode on the real broker: incidents recorded and listed, nothing notified (issue 16).

A worker with DETECTOR_UNREGISTERED=observe sees 20 unregistered experiments, and a registered
experiment with `mode: observe` whose allowlist is breached. Its webhook receiver gets nothing;
`/v1/incidents` lists all 21 incidents as firing, each marked `notified: observe` with a
`folded` timeline entry. A registration in the default mode next to it still pages.
"""

from __future__ import annotations

import json
import time

import pytest
from harness import now_ms, wait_until

pytestmark = pytest.mark.kafka
TOKEN = "observe-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def _register(w, body: dict) -> None:
    code, reply = w.request("PUT", f"/v1/expectations/{body['experiment']}", json.dumps(body).encode(), AUTH)
    assert code in (200, 201), reply
    wait_until(lambda: w.get(f"/v1/experiments/{body['experiment']}")[0] == 200, 20, 0.1, "registration visible")


def test_observe_mode_records_without_notifying(workers, producer, receiver):
    w = workers(env={"DETECTOR_UNREGISTERED": "observe", "DETECTOR_WEBHOOK_URLS": receiver.url,
                     "DETECTOR_API_TOKEN": TOKEN, "DETECTOR_GROUP_WAIT": "100ms"})
    _register(w, {"experiment": "quiet-qa", "mode": "observe", "population": {"allowlist": ["qa-1"]}})
    _register(w, {"experiment": "loud-qa", "population": {"allowlist": ["qa-1"]}})
    t = now_ms()
    events = [{"experiment": f"new-exp-{i:02d}", "user_id": f"u{u}", "variant": "a", "ts": t}
              for i in range(20) for u in range(5)]
    events += [{"experiment": exp, "user_id": "intruder", "variant": "a", "ts": t} for exp in ("quiet-qa", "loud-qa")]
    producer.send_events(events)

    [page] = receiver.wait_for(lambda b: b.get("experiment") == "loud-qa", timeout=30)
    assert page["rule"] == "allowlist_breach"

    def all_recorded():
        code, body = w.get("/v1/incidents?status=firing&limit=100")
        incs = body.get("incidents", []) if code == 200 else []
        return incs if len(incs) == 22 else None

    incs = wait_until(all_recorded, 30, 0.2, "22 firing incidents")
    quiet = [i for i in incs if i["experiment"] != "loud-qa"]
    assert sorted({i["rule"] for i in quiet}) == ["allowlist_breach", "unregistered"]
    code, one = w.get(f"/v1/incidents/{quiet[0]['id']}")
    assert code == 200 and one["notified"] == "observe"
    assert any(e["kind"] == "folded" for e in one["timeline"])
    time.sleep(3)  # well past every group wait: still nothing but the loud page
    assert {b["experiment"] for b in receiver.bodies()} == {"loud-qa"}
