"""Fuzzing the event decoder (issue 8, item 7): hostile bytes never escape as an exception.

`decode` returns an `Assignment` that satisfies the contract's limits or a `Rejected` carrying the
original bytes and one of the documented kinds; `decode_batch` (the ingest hot path) returns
exactly what `decode` gives record by record, for any mix of records.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from detector.events import (
    MAX_ATTRIBUTES,
    MAX_ID_CHARS,
    MAX_TS_MS,
    Assignment,
    Rejected,
    decode,
)

KINDS = {"empty", "too_large", "invalid_json", "invalid_field", "invalid_ts"}
NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the Kafka record time of every fuzzed record
FIELDS = ["experiment", "user_id", "variant", "enrolled", "ts", "attributes"]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from(["", "\x00", "a\x00b", "x" * 300, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00",
                     "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+00:00",
                     "2026-01-01T00:00:00+25:00", NOW, NOW + 1, NOW - 60_000, NOW // 1000, -1, 2**63, 1e300]),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.sampled_from(FIELDS),
                                                                        inner, max_size=5),
    max_leaves=25,
)
events = st.fixed_dictionaries(
    {},
    optional={
        "experiment": st.one_of(st.text(min_size=1, max_size=20), json_values),
        "user_id": st.one_of(st.text(min_size=1, max_size=20), json_values),
        "variant": st.one_of(st.none(), st.text(max_size=10), json_values),
        "enrolled": st.one_of(st.booleans(), json_values),
        "ts": st.one_of(st.integers(NOW - 10 * 86_400_000, NOW + 7_200_000), scalars),
        "attributes": st.one_of(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=40), json_values),
        "extra": json_values,
    },
)


def encodings(draw_obj) -> bytes:
    return json.dumps(draw_obj).encode()


def fields(a):
    """An event as plain data (the batch path returns a subclass of Assignment)."""
    return None if a is None else (a.experiment, a.user_id, a.variant, a.enrolled, a.ts, a.attributes)


def check(value: bytes | None) -> Assignment | Rejected:
    r = decode(value, NOW)
    if isinstance(r, Rejected):
        assert r.kind in KINDS, r
        assert r.value is value  # the original bytes, for the dead-letter topic
        assert isinstance(r.reason, str) and r.reason
        return r
    assert isinstance(r, Assignment)
    assert isinstance(r.experiment, str) and 0 < len(r.experiment) <= MAX_ID_CHARS and "\x00" not in r.experiment
    assert isinstance(r.user_id, str) and 0 < len(r.user_id) <= MAX_ID_CHARS and "\x00" not in r.user_id
    assert r.variant is None or (isinstance(r.variant, str) and len(r.variant) <= MAX_ID_CHARS)
    assert isinstance(r.enrolled, bool)
    assert isinstance(r.ts, int) and 0 <= r.ts <= MAX_TS_MS
    assert NOW - 7 * 86_400_000 <= r.ts <= NOW + 3_600_000
    if r.attributes is not None:
        assert len(r.attributes) <= MAX_ATTRIBUTES
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in r.attributes.items())
    return r


@FUZZ
@given(st.binary(max_size=300))
@example(b"")
@example(b"\xff\xfe{")
@example(b'{"experiment":"e","user_id":"u","x":' + b"[" * 50_000 + b"]" * 50_000 + b"}")
def test_arbitrary_bytes(value):
    check(value)


@FUZZ
@given(json_values)
def test_arbitrary_json(doc):
    check(json.dumps(doc).encode())


@FUZZ
@given(events)
def test_event_shaped_json(doc):
    r = check(json.dumps(doc).encode())
    if isinstance(r, Assignment):
        assert r.experiment == doc["experiment"] and r.user_id == doc["user_id"]


@FUZZ
@given(events, st.data())
def test_mutated_events(doc, data):
    raw = bytearray(json.dumps(doc).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        i = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            raw[i:i] = data.draw(st.sampled_from([b"\x00", b"\\u0000", b'"', b",", b"{", b"[", b"\xff", b"NaN", b"\\"]))
        elif op == "delete" and raw:
            del raw[i]
        elif op == "dup" and raw.startswith(b"{") and len(raw) > 2:
            raw[1:1] = b'"user_id":"dup",'
    check(bytes(raw))


@FUZZ
@given(st.lists(st.one_of(events.map(lambda d: json.dumps(d).encode()), st.binary(max_size=60), st.none()),
                max_size=40), st.data())
def test_batch_decoder_equals_per_record_decoder(values, data):
    from detector import events as ev

    decode_batch = getattr(ev, "decode_batch", None)
    if decode_batch is None:  # no batch path in this version: nothing to compare
        return
    rts = [data.draw(st.sampled_from([NOW, NOW - 1000, 0])) for _ in values]
    got, positions, rejects = decode_batch(list(values), rts)
    want = [decode(v, rt) for v, rt in zip(values, rts)]
    positions = list(range(len(values))) if positions is None else positions
    assert all(isinstance(g, Assignment) for g in got)
    assert [(i, fields(w)) for i, w in enumerate(want) if isinstance(w, Assignment)] == \
        [(i, fields(g)) for i, g in zip(positions, got)]
    assert [(i, w.reason, w.kind) for i, w in enumerate(want) if isinstance(w, Rejected)] == \
        [(i, r.reason, r.kind) for i, r in rejects]


@FUZZ
@given(st.lists(st.fixed_dictionaries({
    "experiment": st.sampled_from(["e1", "e2"]),
    "user_id": st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=12),
    "variant": st.sampled_from(["a", "b", None]), "enrolled": st.booleans(),
    "ts": st.integers(NOW - 86_400_000, NOW),
    "attributes": st.dictionaries(st.sampled_from(["country", "platform"]), st.sampled_from(["US", "BR"]), max_size=2),
}), min_size=1, max_size=30))
def test_batch_of_valid_events_is_decoded_exactly(docs):
    """The fast path's shape: well-formed producers' batches decode to the same events."""
    from detector import events as ev

    decode_batch = getattr(ev, "decode_batch", None)
    values = [json.dumps(d).encode() for d in docs]
    want = [decode(v, NOW) for v in values]
    assert all(isinstance(w, Assignment) for w in want), [w for w in want if isinstance(w, Rejected)]
    if decode_batch is not None:
        got, _, rejects = decode_batch(values, [NOW] * len(values))
        assert not rejects and list(map(fields, got)) == list(map(fields, want))


def test_deep_nesting_never_escapes_either_decoder():
    """msgspec recurses into unknown fields; a RecursionError once escaped both decoders."""
    from detector import events as ev

    deep = b'{"experiment":"e","user_id":"u","x":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    assert check(deep).kind == "invalid_json"
    decode_batch = getattr(ev, "decode_batch", None)
    if decode_batch is not None:
        good = json.dumps({"experiment": "e", "user_id": "u", "ts": NOW}).encode()
        got, positions, rejects = decode_batch([good, deep, good], [NOW] * 3)
        assert positions == [0, 2] and [i for i, _ in rejects] == [1]
