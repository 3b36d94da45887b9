"""SIGKILL the worker while it forwards a platform's source topic (issue 19).

Forwarded records are acknowledged before the source offsets that produced them are committed,
so a crash may forward a record twice but never loses one: after three kills the engine has
exactly the users that were sent (the user counts are exact; only the raw event counter may
include re-forwarded duplicates).
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time

from harness import now_ms, wait_until

from conftest import KafkaProducer2, create_topics, observed, registration_dir, worker_env

EXP = "rel-sources-crash"
TOPIC = "ph.events"
REGISTRATION = {"experiment": EXP, "owner": "qa", "population": {"max_users": 100000},
                "variants": {"control": 0.5, "test": 0.5}}


def test_sigkill_while_forwarding_loses_no_user(workers, ns, tmp_path):
    create_topics(ns)
    env = worker_env(tmp_path, DETECTOR_EXPECTATIONS_DIR=registration_dir(tmp_path, REGISTRATION),
                     DETECTOR_CHECKPOINT_INTERVAL="0.3", DETECTOR_SOURCES=f"{TOPIC}=posthog")
    w = workers(env=env, name="src-crash")
    producer = KafkaProducer2(ns)
    users: list[str] = []
    errors: list[BaseException] = []

    def flow():
        try:
            for b in range(60):
                for i in range(25):
                    u = f"ph-{b:03d}-{i:02d}"
                    users.append(u)
                    ev = {"event": "$feature_flag_called", "distinct_id": u, "timestamp": now_ms(),
                          "properties": {"$feature_flag": EXP, "$feature_flag_response": random.choice(["control", "test"])}}
                    producer.send(json.dumps(ev).encode(), u.encode(), topic=TOPIC)
                    if i % 5 == 0:  # also a $pageview: counted, skipped
                        producer.send(json.dumps({"event": "$pageview", "distinct_id": u}).encode(), u.encode(), topic=TOPIC)
                producer.flush()
                time.sleep(0.1)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=flow, daemon=True)
    t.start()
    try:
        for _ in range(3):
            time.sleep(random.uniform(0.5, 2.5))
            w.kill(signal.SIGKILL)
            w.start(wait_ready=True, timeout=120)
        t.join(timeout=300)
        assert not t.is_alive() and not errors, errors
    finally:
        producer.close()
    assert len(users) == 1500 == len(set(users))
    wait_until(lambda: (observed(w, EXP) or {}).get("enrolled_users") == len(users), 120, 0.5,
               f"{len(users)} users after 3 kills")
    got = observed(w, EXP)
    assert got["eligible_users"] == len(users)
    assert got["events"] >= len(users)  # re-forwarded duplicates are possible, losses are not
