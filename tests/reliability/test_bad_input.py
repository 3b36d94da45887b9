"""Bad input (issue 8, item 1): a hostile corpus interleaved with good events, on the real broker.

Two isolated deployments read the same good events; one also gets the corpus between them.
The dirty one must not crash, must dead-letter every bad record (original bytes, key and a reason
header) and count it in /metrics, and must reach exactly the findings of the clean one.

Timestamps far in the past or future are *rejected* (dead-lettered as `invalid_ts`), not clamped:
an event more than 1 h after its Kafka record time (Kafka's own broker limit for record
timestamps) or more than 7 days before it, or outside 1970..9999, says the producer's clock or
unit is wrong, and judging a window on it would make false findings. See the "Failure modes" section of README.md.
"""

from __future__ import annotations

import json
import os

from harness import Namespace, Worker, now_ms, wait_until

from conftest import KafkaProducer2, create_topics, metric, observed, read_topic, registration_dir, worker_env

from detector.events import Rejected, decode

EXP = "rel-input"
GHOST = "rel-ghost"


def corpus(t0: int) -> list[tuple[str, bytes | None]]:
    """(name, value) of records that must all be rejected."""
    def ev(**kw) -> bytes:
        d = {"experiment": EXP, "user_id": "bad-user", "variant": "a", "ts": t0}
        d.update(kw)
        return json.dumps(d).encode()

    deep = 20000
    return [
        ("not_json", b"{not json"),
        ("empty_bytes", b""),
        ("tombstone", None),
        ("whitespace", b"  \n\t "),
        ("json_string", b'"just a string"'),
        ("json_number", b"42"),
        ("json_null", b"null"),
        ("array_not_object", json.dumps([{"experiment": EXP, "user_id": "u1"}]).encode()),
        ("user_id_int", ev(user_id=123)),
        ("experiment_list", ev(experiment=["a"])),
        ("missing_user_id", json.dumps({"experiment": EXP, "variant": "a", "ts": t0}).encode()),
        ("missing_experiment", json.dumps({"user_id": "u1", "ts": t0}).encode()),
        ("enrolled_string", ev(enrolled="yes")),
        ("variant_object", ev(variant={"name": "a"})),
        ("huge_user_id", ev(user_id="x" * 10_000)),
        ("huge_variant", ev(variant="v" * 300)),
        ("one_mb_json", ev(padding="p" * (1024 * 1024))),
        ("one_mb_binary", os.urandom(1024 * 1024)),
        ("deep_attributes", b'{"experiment":"%s","user_id":"u","attributes":{"a":' % EXP.encode()
         + b"[" * 5000 + b"]" * 5000 + b"}}"),
        ("deep_unknown_field", b'{"experiment":"%s","user_id":"u","x":' % EXP.encode() + b"[" * deep + b"]" * deep + b"}"),
        ("nan", b'{"experiment":"%s","user_id":"u","ts":NaN}' % EXP.encode()),
        ("infinity", b'{"experiment":"%s","user_id":"u","ts":Infinity}' % EXP.encode()),
        ("number_out_of_range", b'{"experiment":"%s","user_id":"u","ts":1e999}' % EXP.encode()),
        ("ts_1e20", ev(ts=1e20)),
        ("ts_bigint", b'{"experiment":"%s","user_id":"u","ts":100000000000000000000000}' % EXP.encode()),
        ("invalid_utf8", b'{"experiment":"%s","user_id":"u\xff\xfe"}' % EXP.encode()),
        ("nul_in_user_id", ev(user_id="a\x00b")),
        ("duplicate_user_id", b'{"experiment":"%s","user_id":"u1","user_id":"u2"}' % EXP.encode()),
        ("duplicate_attribute", b'{"experiment":"%s","user_id":"u1","attributes":{"country":"US","country":"BR"}}'
         % EXP.encode()),
        ("ts_1970", ev(ts="1970-01-01T00:00:00Z")),
        ("ts_year_2000", ev(ts="2000-01-01T00:00:00Z")),
        ("ts_year_2100", ev(ts="2100-01-01T00:00:00Z")),
        ("ts_year_9999", ev(ts="9999-12-31T23:59:59Z")),
        ("ts_negative", ev(ts=-1)),
        ("ts_epoch_seconds", ev(ts=t0 // 1000)),
        ("ts_two_hours_ahead", ev(ts=t0 + 2 * 3600 * 1000)),
        ("ts_no_offset", ev(ts="2024-01-01T00:00:00")),
        ("ts_words", ev(ts="yesterday")),
        ("ts_bool", ev(ts=True)),
        ("too_many_attributes", ev(attributes={f"k{i}": "v" for i in range(40)})),
        ("utf16", ev().decode().encode("utf-16")),
        ("bom_prefix", b"\xef\xbb\xbf" + ev()),
        ("trailing_garbage", ev() + b"}}"),
        ("two_documents", ev() + ev()),
        ("empty_experiment", ev(experiment="")),
    ]


def good_events(t0: int) -> list[dict]:
    out = [{"experiment": EXP, "user_id": f"u{i}", "variant": "ab"[i % 2], "ts": t0 + i * 10} for i in range(40)]
    out += [{"experiment": GHOST, "user_id": f"g{i}", "variant": "a", "ts": t0 + i} for i in range(5)]
    return out


REGISTRATION = {
    "schema_version": 1, "experiment": EXP, "owner": "reliability",
    "population": {"allowlist": [f"u{i}" for i in range(10)], "max_users": 20},
    "variants": {"a": 0.5, "b": 0.5}, "severity": "critical",
}


def _start(ns: Namespace, tmp, receiver, name: str) -> Worker:
    env = worker_env(tmp, receiver, DETECTOR_EXPECTATIONS_DIR=registration_dir(tmp, REGISTRATION))
    return Worker(ns, tmp, env, name).start(wait_ready=False)


def _findings(w: Worker) -> dict:
    obs = observed(w, EXP)
    ghost = observed(w, GHOST)
    strip = lambda o: {k: v for k, v in (o or {}).items()}  # noqa: E731
    return {"exp": strip(obs), "ghost": strip(ghost)}


def test_hostile_corpus_is_dead_lettered_and_changes_no_finding(tmp_path, kafka):
    from harness import Receiver

    clean_ns, dirty_ns = Namespace(), Namespace()
    clean_rx, dirty_rx = Receiver(), Receiver()
    (tmp_path / "clean").mkdir()
    (tmp_path / "dirty").mkdir()
    t0 = now_ms() - 60_000
    bad = corpus(t0)
    assert len(bad) >= 25
    good = good_events(t0)
    expected_kinds: dict[str, int] = {}
    for name, value in bad:
        r = decode(value, now_ms())
        assert isinstance(r, Rejected), f"corpus entry {name} is accepted by the decoder: {r}"
        expected_kinds[r.kind] = expected_kinds.get(r.kind, 0) + 1

    for ns in (clean_ns, dirty_ns):
        create_topics(ns)
    pc, pd = KafkaProducer2(clean_ns), KafkaProducer2(dirty_ns)
    try:
        for ev in good:
            pc.event(ev)
        # Interleave: a bad record after every good one, all keyed like the good ones.
        bad_iter = iter(bad)
        for ev in good:
            pd.event(ev)
            nxt = next(bad_iter, None)
            if nxt is not None:
                pd.send(nxt[1], EXP.encode())
        for _, value in bad_iter:
            pd.send(value, EXP.encode())
        pc.flush()
        pd.flush()
    finally:
        pc.close()
        pd.close()

    clean = _start(clean_ns, tmp_path / "clean", clean_rx, "clean")
    dirty = _start(dirty_ns, tmp_path / "dirty", dirty_rx, "dirty")
    try:
        clean.wait_ready(90)
        dirty.wait_ready(90)
        n_exp = sum(1 for e in good if e["experiment"] == EXP)
        for w in (clean, dirty):
            wait_until(lambda w=w: (observed(w, EXP) or {}).get("events") == n_exp
                       and (observed(w, GHOST) or {}).get("events") == 5, 60, 0.25, f"{w.log_path.name} events")

        # Every bad record is in the dead-letter topic: original bytes, key, reason and kind headers.
        dl = read_topic(dirty_ns, "exposure.deadletter", min_records=len(bad), timeout=60)
        assert len(dl) == len(bad), [r.value[:60] for r in dl]
        by_value = {}
        for rec in dl:
            h = dict(rec.headers)
            assert h.get("reason"), rec
            assert h.get("kind"), rec
            assert rec.key == EXP.encode()
            by_value.setdefault(rec.value, []).append(h["kind"].decode())
        for name, value in bad:
            assert value in by_value, f"{name} missing from the dead-letter topic (original bytes not kept)"
            assert by_value[value].pop(0) == decode(value, now_ms()).kind
        assert read_topic(clean_ns, "exposure.deadletter", timeout=3) == []

        # The counter: one per bad record, by kind.
        wait_until(lambda: metric(dirty.get("/metrics")[1], "exposure_detector_dead_lettered_total") == len(bad),
                   20, 0.5, "dead-letter counter")
        text = dirty.get("/metrics")[1]
        for kind, n in expected_kinds.items():
            assert metric(text, "exposure_detector_dead_lettered_total", reason=kind) == n, kind

        # Same findings with and without the bad records: observation per experiment and webhooks.
        assert _findings(dirty) == _findings(clean)
        key = lambda b: (b["experiment"], b["rule"], b["status"], b["first_offending_event_at"])  # noqa: E731
        want = {("rel-input", "allowlist_breach"), ("rel-input", "max_users_exceeded"), ("rel-ghost", "unregistered")}
        for rx in (clean_rx, dirty_rx):
            rx.wait_for(lambda b: True, count=len(want), timeout=30)
        wait_until(lambda: sorted(map(key, dirty_rx.bodies())) == sorted(map(key, clean_rx.bodies())), 15, 0.5,
                   "same webhooks")
        assert {(b["experiment"], b["rule"]) for b in dirty_rx.bodies()} == want

        # Still alive and still working after all of it.
        assert dirty.proc.poll() is None
        log = dirty.log_path.read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
        p = KafkaProducer2(dirty_ns)
        p.event({"experiment": EXP, "user_id": "after-the-storm", "variant": "a", "ts": now_ms()})
        p.flush()
        p.close()
        wait_until(lambda: (observed(dirty, EXP) or {}).get("events") == n_exp + 1, 30, 0.25, "event after the corpus")
    finally:
        clean.stop()
        dirty.stop()
