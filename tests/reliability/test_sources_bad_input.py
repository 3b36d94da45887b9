"""Bad input on a platform's source topic (issue 19), on the real broker and worker.

A Segment topic shared with other tracking: `Order Completed` and `identify` messages are valid
Segment events but not exposures (counted as not_exposure, never dead-lettered); malformed records
are dead-lettered with their original bytes, key, a reason and kind, and the source topic,
partition and offset; the exposures among them reach the engine; nothing stops the worker.
"""

from __future__ import annotations

import json

from harness import now_ms, wait_until

from conftest import KafkaProducer2, metric, observed, put_registration, read_topic, worker_env

EXP = "rel-sources"
TOPIC = "seg.tracks"


def _viewed(user: str, ts: int) -> bytes:
    return json.dumps({"type": "track", "event": "Experiment Viewed", "userId": user, "timestamp": ts,
                       "properties": {"experiment_id": EXP, "variation_name": "a"}}).encode()


def test_shared_segment_topic_counts_skips_and_dead_letters(workers, ns, tmp_path):
    w = workers(env=worker_env(tmp_path, DETECTOR_SOURCES=f"exposure.assignments=native,{TOPIC}=segment"))
    put_registration(w, {"experiment": EXP, "owner": "qa", "population": {"max_users": 1000},
                         "variants": {"a": 0.5, "b": 0.5}})
    t0 = now_ms() - 1000
    skipped = [json.dumps({"type": "track", "event": "Order Completed", "userId": "u1",
                           "properties": {"total": 30}}).encode(),
               json.dumps({"type": "identify", "userId": "u1", "traits": {"plan": "pro"}}).encode()]
    bad = {"invalid_json": b"{not json", "empty": None, "too_large": b'{"x": "' + b"p" * (70 * 1024) + b'"}',
           "invalid_field": json.dumps({"type": "track", "event": "Experiment Viewed", "userId": "u1",
                                        "properties": {"variation_name": "a"}}).encode(),
           "invalid_ts": _viewed("u-late", t0 - 30 * 86400 * 1000)}
    p = KafkaProducer2(ns)
    try:
        for i in range(10):  # key = user, as a tracking pipeline would: the detector re-keys by experiment
            p.send(_viewed(f"u{i}", t0), f"u{i}".encode(), topic=TOPIC)
        for v in skipped:
            p.send(v, b"u1", topic=TOPIC)
        for v in bad.values():
            p.send(v, b"bad", topic=TOPIC)
        p.flush()
    finally:
        p.close()

    wait_until(lambda: (observed(w, EXP) or {}).get("events") == 10, 60, 0.25, "the 10 exposures in the engine")
    dl = read_topic(ns, "exposure.deadletter", min_records=len(bad), timeout=60)
    kinds = sorted(dict(r.headers)["kind"].decode() for r in dl)
    assert kinds == sorted(bad), kinds  # the not-exposures are not there
    for rec in dl:
        h = dict(rec.headers)
        assert h["reason"] and rec.key == b"bad"
        topic, partition, offset = h["source"].decode().rsplit("/", 2)
        assert topic == ns.topic(TOPIC) and int(partition) >= 0 and int(offset) >= 0
        assert rec.value == bad[h["kind"].decode()]

    def counted():
        _, text = w.get("/metrics")
        return text if metric(text, "exposure_detector_source_records_read_total", topic=ns.topic(TOPIC)) == 17 else None

    text = wait_until(counted, 30, 0.5, "source metrics")
    labels = {"topic": ns.topic(TOPIC), "format": "segment"}
    assert metric(text, "exposure_detector_source_records_decoded_total", **labels) == 10
    assert metric(text, "exposure_detector_source_records_not_exposure_total", **labels) == 2
    for kind in bad:
        assert metric(text, "exposure_detector_source_records_rejected_total", reason=kind, **labels) == 1
    assert metric(text, "exposure_detector_dead_lettered_total") == len(bad)
    assert w.get("/readyz")[0] == 200
