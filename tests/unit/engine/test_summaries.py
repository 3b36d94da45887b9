"""Finding summaries are read by people in Slack, PagerDuty and the console: exact, and no user id."""

from __future__ import annotations

from detector.engine import ExperimentState, process_batch
from detector.registration.compiled import CompiledRegistration
from tests.unit.engine.helpers import T0, ev


def test_allowlist_summary_counts_in_words_and_names_no_user():
    exp = CompiledRegistration("exp", allowlist=frozenset({"qa-1"}))
    st = ExperimentState.new("exp")
    [f] = process_batch(st, exp, [ev("qa-1", ts=T0), ev("u-first", ts=T0 + 1)])
    assert f.summary == "exp: 1 enrolled user not on the allowlist of 1"
    [f] = process_batch(st, exp, [ev("u-second", ts=T0 + 2), ev("u-third", ts=T0 + 3)])
    assert f.summary == "exp: 3 enrolled users not on the allowlist of 1"
    assert "u-" not in f.summary


def test_segment_and_window_summaries_name_no_user():
    exp = CompiledRegistration("exp", segments={"country": frozenset({"US"})}, starts_at=T0 + 4_000_000)  # past the 1 h grace
    st = ExperimentState.new("exp")
    found = process_batch(st, exp, [ev("u-1", ts=T0, attrs={"country": "FR"})])
    summaries = {f.rule: f.summary for f in found}
    assert summaries["segment_breach"].startswith("exp: 1 enrolled user outside")
    assert summaries["outside_window"] == "exp: 1 user enrolled outside the declared window"
    assert all("u-1" not in s for s in summaries.values())
