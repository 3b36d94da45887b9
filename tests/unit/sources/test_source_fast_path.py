"""The columnar fast path of the source decoders gives exactly what the per-record path gives.

Every format decodes a batch in columns when every record is of the common shape and falls back
to the per-record converter otherwise; here batches of documented fixtures with fields varied
(times in every form, ids as numbers, empty, long, with NUL, flags off, ...) are decoded both
ways and must agree on events, positions and rejects (reason, kind and bytes).
"""

from __future__ import annotations

import copy
import importlib
import json
import typing
from datetime import datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from source_fixtures import CASES

from detector.sources import decoder_for
from detector.sources._common import epoch_ms, rfc3339_ms

NOW = 1_714_564_800_300
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _iso(ms: int, width: int) -> str:
    d = EPOCH + timedelta(milliseconds=ms)
    base = d.strftime("%Y-%m-%dT%H:%M:%S")
    return {20: base + "Z", 24: f"{base}.{ms % 1000:03d}Z", 27: f"{base}.{ms % 1000:03d}123Z"}[width]


times = st.one_of(
    st.integers(min_value=NOW - 8 * 86400_000, max_value=NOW + 2 * 3600_000).flatmap(
        lambda ms: st.sampled_from([ms, _iso(ms, 20), _iso(ms, 24), _iso(ms, 27),
                                    _iso(ms, 24).replace("Z", "+00:00"), _iso(ms, 24).lower()])),
    st.sampled_from([None, 0, -1, "", "2024-02-30T00:00:00.000Z", "0000-01-01T00:00:00.000Z",
                     "2024-05-01T12:00:00.300", "2024-05-01T24:00:00.000Z", 1.5, True]))
variations = st.one_of(
    times,
    st.sampled_from([None, "", "x", "control", "off", "disabled", "default", "layerAssignment", "OFF", "ERROR",
                     "x" * 257, "a\x00b", "é", True, False, 0, 7, 2**70, 1.5, [], {}, {"name": "B"},
                     {"name": "B", "enabled": False}, "statsig::gate_exposure", "feature", "isEnabled", "ab-test"]))
FORMATS = ["segment", "posthog", "launchdarkly", "statsig", "unleash", "amplitude", "optimizely", "openfeature"]


def _wire_names(struct_type, seen=None) -> set[str]:
    """Every JSON field name a format's wire struct reads (nested structs included)."""
    seen = set() if seen is None else seen
    names = set()
    for f in msgspec.structs.fields(struct_type):
        names.add(f.encode_name)
        for t in typing.get_args(f.type) or (f.type,):
            if isinstance(t, type) and issubclass(t, msgspec.Struct) and t not in seen:
                seen.add(t)
                names |= _wire_names(t, seen)
    return names


def _read_names(fmt: str) -> set[str]:
    module = importlib.import_module(f"detector.sources.{decoder_for(fmt).format}")
    wire = getattr(module, "_Event", None)
    return _wire_names(wire) if wire is not None else {k for _, d, _, _ in CASES for k in d}


def _paths(doc, prefix=()):
    for k, v in doc.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


def _set(doc, path, value):
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


def _both(fmt, values, record_ts, options=None):
    fast = decoder_for(fmt, options)
    slow = decoder_for(fmt, options)
    slow._fast = None  # the per-record path only
    return fast.decode_batch(values, record_ts), slow.decode_batch(values, record_ts)


def _same(a, b):
    (ev_a, pos_a, rej_a), (ev_b, pos_b, rej_b) = a, b
    assert ev_a == ev_b
    assert pos_a == pos_b
    assert [(i, r.reason, r.kind, r.value) for i, r in rej_a] == [(i, r.reason, r.kind, r.value) for i, r in rej_b]


@pytest.mark.parametrize("fmt", FORMATS)
@FAST
@given(data=st.data(), n=st.integers(min_value=1, max_value=6))
def test_fast_path_equals_per_record_path(fmt, data, n):
    fixtures = [doc for f, doc, _, _ in CASES if decoder_for(f).format == decoder_for(fmt).format]
    names = _read_names(fmt)
    docs = []
    for _ in range(n):
        doc = copy.deepcopy(data.draw(st.sampled_from(fixtures)))
        paths = list(_paths(doc))
        read = [p for p in paths if p[-1] in names] or paths  # mostly the fields the decoder reads
        for path in data.draw(st.lists(st.sampled_from(read) | st.sampled_from(paths), max_size=2, unique=True)):
            try:
                _set(doc, path, copy.deepcopy(data.draw(variations)))
            except (TypeError, KeyError):  # a parent replaced by a scalar a moment ago
                pass
        docs.append(doc)
    values = [json.dumps(d).encode() for d in docs]
    record_ts = data.draw(st.sampled_from([[0] * n, [NOW] * n]))
    _same(*_both(fmt, values, record_ts))


@pytest.mark.parametrize("fmt, doc", [(f, d) for f, d, _, _ in CASES if f != "native"])
def test_a_batch_of_one_shape_takes_the_fast_path_and_agrees(fmt, doc):
    docs = []
    for i in range(300):
        d = copy.deepcopy(doc)
        for path in _paths(d):
            if path[-1] in ("timestamp", "creationDate", "time"):
                _set(d, path, NOW - i * 997 if isinstance(_get(doc, path), int) else _iso(NOW - i * 997, 24))
            if path[-1] in ("userId", "distinct_id", "user_id", "feature_flag.context.id", "targetingKey"):
                _set(d, path, f"u-{i}")
        docs.append(d)
    values = [json.dumps(d).encode() for d in docs]
    fast, slow = _both(fmt, values, [NOW] * len(values))
    _same(fast, slow)
    assert len(fast[0]) == 300


def _get(doc, path):
    for k in path:
        doc = doc[k]
    return doc


@FAST
@given(ms=st.integers(min_value=0, max_value=253402300799999), width=st.sampled_from([20, 24, 27]))
def test_rfc3339_column_parse_equals_msgspec_then_epoch_ms(ms, width):
    text = _iso(ms, width)
    want = epoch_ms(msgspec.json.decode(json.dumps(text).encode(), type=datetime), "ts", 0)
    assert rfc3339_ms([text, text]) == [want, want]


@pytest.mark.parametrize("text", ["2023-02-29T00:00:00.000Z", "2024-13-01T00:00:00.000Z", "2024-01-01T24:00:00Z",
                                  "2024-01-01T23:59:60Z", "2024-01-01 23:59:59Z", "2024-01-01T23:59:59.000+00:00",
                                  "2024-01-01t23:59:59Z", "2024-01-01T23:59:59.0000Z", "２０２４-01-01T23:59:59Z"])
def test_rfc3339_column_parse_leaves_other_forms_to_the_per_record_path(text):
    assert rfc3339_ms([text]) is None
    assert rfc3339_ms(["2024-01-01T23:59:59.000Z", text]) is None


TRICKY = [None, "", "x", "control", "off", "disabled", "default", "layerAssignment", "OFF", "ERROR", "x" * 257,
          "a\x00b", "é", True, False, 0, 7, -1, 2**70, 1.5, [], {}, {"name": "B"}, {"name": "B", "enabled": False},
          "statsig::gate_exposure", "feature", "isEnabled", "ab-test", "track", "identify",
          NOW, NOW - 8 * 86400_000, NOW + 2 * 3600_000, _iso(NOW, 20), _iso(NOW, 24), _iso(NOW, 27),
          _iso(NOW, 24).replace("Z", "+00:00"), _iso(NOW, 24).lower(), "2024-02-30T00:00:00.000Z",
          "0000-01-01T00:00:00.000Z", "2024-05-01T12:00:00.300", "1970-01-01T00:00:00Z"]


@pytest.mark.parametrize("fmt, doc", [(f, d) for f, d, _, _ in CASES if f != "native"])
def test_every_field_varied_alone_gives_what_the_per_record_path_gives(fmt, doc):
    for path in _paths(doc):
        for value in TRICKY:
            d = copy.deepcopy(doc)
            _set(d, path, copy.deepcopy(value))
            values = [json.dumps(doc).encode(), json.dumps(d).encode()]
            for record_ts in ([NOW, NOW], [0, 0]):
                fast, slow = _both(fmt, values, record_ts)
                try:
                    _same(fast, slow)
                except AssertionError:
                    raise AssertionError(f"{path} = {value!r}, record time {record_ts[0]}") from None


def test_a_topic_shared_with_other_events_backs_off_the_fast_path_and_comes_back():
    fmt, doc = next((f, d) for f, d, _, _ in CASES if f == "posthog")
    pageview = json.dumps({"event": "$pageview", "distinct_id": "u1", "properties": {"$current_url": "/"}}).encode()
    exposure = json.dumps(doc).encode()
    dec = decoder_for(fmt)
    slow = decoder_for(fmt)
    slow._fast = None
    for _ in range(3):  # blocks of other events: every result as per record, the fast path tried less and less
        values = [pageview] * 600 + [exposure] * 10
        _same(dec.decode_batch(values, [0] * len(values)), slow.decode_batch(values, [0] * len(values)))
    assert dec._backoff > 1  # two blocks failed: 1, then 3 blocks skipped
    for _ in range(40):  # a topic of exposures again: the fast path is back after its skipped blocks
        values = [exposure] * 512
        _same(dec.decode_batch(values, [0] * 512), slow.decode_batch(values, [0] * 512))
    assert dec._backoff == 0 and dec._skip == 0
