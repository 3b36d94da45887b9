"""`/readyz` answers 503 without partitions (README) and 200 once partitions are assigned and restored.

Two workers share a group whose topics have one partition: one owns it and is ready; the other
has nothing to serve and is not ready, yet still answers the API (forwarding to the owner).
"""

from __future__ import annotations

import json

import pytest

from harness import wait_until

pytestmark = [pytest.mark.kafka]

TOKEN = "ready-token"


def test_worker_without_partitions_is_not_ready(workers, ns):
    ns.partitions = 1
    env = {"DETECTOR_API_TOKEN": TOKEN, "DETECTOR_SESSION_TIMEOUT": "6"}
    a = workers(env=env, name="a")
    code, body = a.get("/readyz")
    assert code == 200 and body["partitions"] == [0] and body["rebalancing"] is False, body
    b = workers(env=env, name="b", wait_ready=False)

    def settled():
        states = [(w.get("/readyz")) for w in (a, b)]
        codes = sorted(c for c, _ in states)
        return codes == [200, 503] and states

    states = wait_until(settled, 60, 0.3, "one ready worker and one without partitions")
    idle = b if states[1][0] == 503 else a
    owner = a if idle is b else b
    code, body = idle.get("/readyz")
    assert code == 503 and body["partitions"] == [] and body["ready"] is False, body

    # the idle worker still answers, as the owner would
    doc = {"experiment": "ready-qa", "owner": "qa", "population": {"allowlist": ["u1"]}}
    code, _ = idle.request("PUT", "/v1/expectations/ready-qa?confirm=true", json.dumps(doc).encode(),
                           {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert code in (200, 201), code
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def get(w):
        return w.request("GET", "/v1/expectations/ready-qa", None, auth)

    wait_until(lambda: get(owner)[0] == 200, 15, 0.2, "the registration")
    assert get(idle) == get(owner)
