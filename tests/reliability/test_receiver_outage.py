"""Receiver outage (issue 8, item 4): the webhook receiver answers 503 for a while.

Every notification queued meanwhile (firing and resolved, several incidents) arrives afterwards,
each incident's in the order it was queued. The outage lasts `RELIABILITY_RECEIVER_OUTAGE_S`
seconds (default 20 in CI; the issue's scenario is 300).
"""

from __future__ import annotations

import json
import os
import time

from harness import Receiver, now_ms, wait_until

from conftest import KafkaProducer2, read_topic, webhook_ids, worker_env

OUTAGE_S = float(os.environ.get("RELIABILITY_RECEIVER_OUTAGE_S", "20"))


def test_notifications_queued_during_an_outage_all_arrive_in_order(workers, ns, tmp_path):
    up_at = time.time() + OUTAGE_S
    rx = Receiver(script=lambda i: 503 if time.time() < up_at else 200)
    w = workers(env=worker_env(tmp_path, rx, lifecycle={"resolve_quiet_period": "2s"}), name="outage")
    p = KafkaProducer2(ns)
    try:
        # Three experiments breach (unregistered), go quiet and resolve, and two breach again:
        # five incidents, ten state changes, all while the receiver is down.
        for round_ in range(2):
            for k in range(3 if round_ == 0 else 2):
                for i in range(3):
                    p.event({"experiment": f"rel-outage-{k}", "user_id": f"r{round_}-u{i}", "variant": "a",
                             "ts": now_ms()})
            p.flush()
            time.sleep(4)  # > quiet period: the incidents resolve
    finally:
        p.close()
    assert time.time() < up_at, "the outage ended before the notifications were queued; raise the outage"
    outbox = read_topic(ns, "exposure.alerts", min_records=10, timeout=30)
    queued: dict[str, list[str]] = {}
    for rec in sorted(outbox, key=lambda r: (r.partition, r.offset)):
        nid = json.loads(rec.value)["id"]
        queued.setdefault(rec.key.decode(), []).append(nid)
    assert len(queued) == 5 and sum(map(len, queued.values())) == 10, queued
    assert not rx.requests, "delivered during the outage?"
    assert rx.attempts, "no delivery was even tried during the outage"

    wait_until(lambda: set(webhook_ids(rx)) >= {n for ids in queued.values() for n in ids}, OUTAGE_S + 60, 0.5,
               "every queued notification delivered after the outage")
    got = webhook_ids(rx)
    for incident, ids in queued.items():
        delivered = [i for i in dict.fromkeys(got) if i.split(":")[0] == incident]
        assert delivered == ids, (incident, delivered, ids)
        assert ids[0].endswith(":firing:1") and ids[-1].endswith(":resolved")
    retried = len(rx.attempts) - len(rx.requests)
    print(f"\noutage {OUTAGE_S:.0f} s: {len(got)} notifications delivered after {retried} refused attempts; "
          f"last arrived {rx.requests[-1]['at'] - up_at:.1f} s after the receiver came back")
