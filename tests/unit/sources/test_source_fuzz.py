"""Every source decoder, fed arbitrary bytes or arbitrary JSON near its shape, never raises.

It returns Assignments within the native limits or Rejected records that keep the original
bytes, one per input (batch and record by record agree).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from source_fixtures import CASES

from detector.events import MAX_ID_CHARS, Assignment, Rejected
from detector.sources import FORMATS, decoder_for

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 1_767_225_600_000
KINDS = {"empty", "too_large", "invalid_json", "invalid_field", "invalid_ts", "not_exposure", "no_identity"}
# The keys every format looks at, so that generated objects reach the converters' branches.
KEYS = sorted({k for _, doc, _, _ in CASES for k in doc} | {"$feature_flag", "$feature_flag_response", "key",
                                                           "flagKey", "metadata", "contextKeys", "user"})

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                    st.sampled_from(["", "\x00", "x" * 300, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00",
                                     "feature", "$feature_flag_called", "Experiment Viewed", "track", "flag",
                                     "getVariant", "$exposure", "statsig::experiment_exposure", NOW]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=6),
                           max_leaves=30)
FORMAT_NAMES = sorted({decoder_for(f).format for f in FORMATS})


def _check(fmt: str, values: list) -> None:
    dec = decoder_for(fmt)
    events, positions, rejects = dec.decode_batch(values, [NOW] * len(values))
    assert len(events) + len(rejects) == len(values)
    for ev in events:
        assert isinstance(ev, Assignment)
        assert 0 < len(ev.experiment) <= MAX_ID_CHARS and 0 < len(ev.user_id) <= MAX_ID_CHARS
        assert "\x00" not in ev.experiment + ev.user_id
    for i, r in rejects:
        assert isinstance(r, Rejected) and r.kind in KINDS and r.value is values[i]
    for v in values:
        assert isinstance(dec.decode_one(v, NOW), (Assignment, Rejected))


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@FUZZ
@given(values=st.lists(st.binary(max_size=200) | st.none(), min_size=1, max_size=5))
def test_arbitrary_bytes_never_raise(fmt, values):
    _check(fmt, values)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@FUZZ
@given(docs=st.lists(json_values, min_size=1, max_size=4), data=st.data())
def test_arbitrary_json_near_each_shape_never_raises(fmt, docs, data):
    fixtures = [doc for f, doc, _, _ in CASES if decoder_for(f).format == fmt]
    base = data.draw(st.sampled_from(fixtures))
    # mutate the documented fixture: each key replaced by an arbitrary value, or dropped
    mutated = {k: data.draw(st.one_of(st.just(v), json_values)) for k, v in base.items()
               if data.draw(st.booleans()) or k in ("event", "kind", "type", "eventName", "eventType", "event_type")}
    values = [json.dumps(d).encode() for d in docs] + [json.dumps(mutated).encode()]
    _check(fmt, values)
