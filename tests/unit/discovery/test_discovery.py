"""Discovery: exposure from the real engine state, the Wilson interval, drafts the real parser accepts."""

from __future__ import annotations

import random

import pytest
import yaml

from detector.discovery import (
    AttributeSample,
    draft_yaml,
    exposure,
    exposure_from_dict,
    to_csv,
    wilson_interval,
)
from detector.engine import ExperimentState, process_batch, rule_breaches
from detector.events import Assignment
from detector.registration.files import yaml_load
from detector.registration.model import parse_registration
from detector.registration.risk import assess

T0 = 1_700_000_000_000


def _events(exp: str, users: int, share: float, variants=("control", "treatment"), seed=1, attrs=None):
    rng = random.Random(seed)
    out = []
    for i in range(users):
        enrolled = rng.random() < share
        out.append(Assignment(experiment=exp, user_id=f"u{i}", variant=rng.choice(variants) if enrolled else None,
                              enrolled=enrolled, ts=T0 + i, attributes=attrs))
    return out


def _state(events):
    st = ExperimentState.new(events[0].experiment)
    for i in range(0, len(events), 1000):
        process_batch(st, None, events[i:i + 1000])
    return st


def test_wilson_interval_covers_and_shrinks():
    lo, hi = wilson_interval(300, 1000)
    assert lo < 0.3 < hi and hi - lo < 0.06
    lo2, hi2 = wilson_interval(3000, 10000)
    assert hi2 - lo2 < hi - lo
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 0) is None


def test_large_experiment_drafts_a_fraction_that_registers_and_resolves_unregistered():
    events = _events("checkout-v2", 20_000, 0.3, attrs={"country": "BR", "platform": "ios"})
    st = _state(events)
    sample = AttributeSample()
    sample.add("checkout-v2", events[:100])
    e = exposure(st, None, sample.of("checkout-v2"), ["unregistered"])
    assert e.eligible_users == 20_000 and 0.28 < e.fraction < 0.32
    assert e.fraction_ci95[0] < e.fraction < e.fraction_ci95[1]
    assert e.segments_seen == {"country": {"BR": 8}, "platform": {"ios": 8}}
    text = draft_yaml(e)
    assert "REVIEW" in text and "owner" in text and "allowlist vs fraction" in text and "country=BR" in text
    exp = parse_registration(yaml_load(text))
    assert exp.fraction == 0.3 and exp.tolerance >= 0.1 and exp.variants == {"control": 0.5, "treatment": 0.5}
    obs = {"enrolled_users": st.s, "observed_fraction": st.s / st.n}
    assert assess(None, exp, obs) == []  # no risk needing --confirm
    # registered under the draft, the observed traffic breaches nothing
    assert not any(rule_breaches(st, exp).values())


def test_small_experiment_drafts_max_users_and_names_the_allowlist_choice():
    st = _state(_events("crm-qa", 40, 1.0, variants=("a",)))
    e = exposure(st, None)
    text = draft_yaml(e)
    assert "allowlist vs max_users" in text
    exp = parse_registration(yaml_load(text))
    assert exp.max_users >= 40 and not any(rule_breaches(st, exp).values())


def test_enrolment_only_stream_uses_max_users_and_uneven_split_is_left_to_review():
    st = _state(_events("promo", 5000, 1.0, variants=("a", "a", "a", "b", "c"), seed=3))
    e = exposure(st, None)
    assert not e.fraction_observable
    text = draft_yaml(e)
    exp = parse_registration(yaml_load(text))
    assert exp.max_users >= 2 * 5000 * 0.99 and exp.fraction is None
    assert exp.variants is None or abs(sum(exp.variants.values()) - 1) < 1e-6
    assert not any(rule_breaches(st, exp).values())


def test_json_round_trip_and_csv():
    st = _state(_events("=cmd", 500, 0.5))
    e = exposure(st, None, {"country": {"US": 3}})
    back = exposure_from_dict(yaml.safe_load(yaml.safe_dump(e.to_dict())))
    assert back == e
    csv_text = to_csv([e])
    assert csv_text.splitlines()[0].startswith("experiment,registered")
    assert csv_text.splitlines()[1].startswith("'=cmd")  # a formula-like cell is defused


@pytest.mark.parametrize("share", [0.01, 0.05, 0.5, 0.97])
def test_drafts_for_many_shares_parse_and_hold(share):
    st = _state(_events(f"exp-{share}", 30_000, share, seed=int(share * 100)))
    exp = parse_registration(yaml_load(draft_yaml(exposure(st, None))))
    assert not any(rule_breaches(st, exp).values())


def test_three_way_split_sums_to_one():
    st = _state(_events("three", 9000, 0.6, variants=("a", "b", "c"), seed=5))
    exp = parse_registration(yaml_load(draft_yaml(exposure(st, None))))
    assert set(exp.variants) == {"a", "b", "c"}
