"""Time (issue 8, item 5): out-of-order and late events (minutes) are judged by event time.

A window of [T-30 min, T+10 min): events inside it arrive shuffled and up to 25 minutes late,
and raise nothing; events before or after it (late, or ahead by minutes) raise `outside_window`
once, with the earliest offending event time and exactly the offending users.
"""

from __future__ import annotations

import random
import time

from harness import now_ms, wait_until

from conftest import KafkaProducer2, observed, put_registration, worker_env

from detector.timestamps import format_timestamp

MIN = 60_000


def test_late_and_out_of_order_events_neither_false_nor_missed(workers, receiver, ns, tmp_path):
    # event time, not the edge grace (DETECTOR_WINDOW_GRACE, 1 h by default) is what this test is about
    w = workers(env={**worker_env(tmp_path, receiver), "DETECTOR_WINDOW_GRACE": "0"}, name="time")
    T = now_ms()
    for exp in ("rel-window", "rel-window-quiet"):
        put_registration(w, {"schema_version": 1, "experiment": exp, "owner": "reliability",
                             "starts_at": format_timestamp(T - 30 * MIN), "ends_at": format_timestamp(T + 10 * MIN)})
    rng = random.Random(5)
    inside = [T - 29 * MIN + rng.randrange(38 * MIN) for _ in range(120)]  # all within the window
    p = KafkaProducer2(ns)
    try:
        for exp in ("rel-window", "rel-window-quiet"):
            ts = inside[:]
            rng.shuffle(ts)
            for chunk in (ts[:40], ts[40:80], ts[80:]):  # several batches, each out of order
                for i, t in enumerate(chunk):
                    p.event({"experiment": exp, "user_id": f"in-{t}-{i}", "variant": "a", "ts": t})
                p.flush()
                time.sleep(0.3)
        wait_until(lambda: all((observed(w, e) or {}).get("events") == 120 for e in ("rel-window", "rel-window-quiet")),
                   30, 0.25, "in-window events applied")
        time.sleep(1.5)  # > group_wait: a false finding would have been paged by now
        assert receiver.bodies() == [], "in-window events, late or out of order, raised an alert"

        # Late (before the window) and early-future (after it) events, interleaved with more in-window ones.
        late = [T - 45 * MIN, T - 31 * MIN, T - 40 * MIN]
        after = [T + 12 * MIN, T + 20 * MIN]
        batch = [(t, f"late-{i}") for i, t in enumerate(late)] + [(t, f"after-{i}") for i, t in enumerate(after)]
        batch += [(t, f"more-{i}") for i, t in enumerate(inside[:10])]
        rng.shuffle(batch)
        for t, uid in batch:
            p.event({"experiment": "rel-window", "user_id": uid, "variant": "a", "ts": t})
        p.flush()
    finally:
        p.close()
    [alert] = receiver.wait_for(lambda b: b.get("rule") == "outside_window", timeout=30)
    assert alert["experiment"] == "rel-window"
    assert alert["blast_radius"]["count"] == len(late) + len(after)
    first = alert["first_offending_event_at"]
    assert first in (T - 45 * MIN, format_timestamp(T - 45 * MIN)), first
    obs = observed(w, "rel-window")
    assert obs["events"] == 135
    assert obs["rules"]["outside_window"]["offenders"] == len(late) + len(after)
    time.sleep(1)
    assert [b["experiment"] for b in receiver.bodies()] == ["rel-window"], "the quiet experiment alerted"
