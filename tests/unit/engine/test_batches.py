"""Splitting a mixed batch by experiment keeps each experiment's events in input order."""

from detector.engine import by_experiment
from tests.unit.engine.helpers import T0, ev


def test_by_experiment_keeps_input_order_within_and_first_seen_order_across():
    mixed = [ev(f"u{i}", exp=e, ts=T0 + i) for i, e in enumerate("abacbba")]
    groups = by_experiment(mixed)
    assert list(groups) == ["a", "b", "c"]
    assert [e.ts - T0 for e in groups["a"]] == [0, 2, 6]
    assert [e.ts - T0 for e in groups["b"]] == [1, 4, 5]
    assert [e.user_id for e in groups["c"]] == ["u3"]
    assert by_experiment([]) == {}
