"""Blast radius from the engine state: exact sets, re-judging, paging, CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import pytest

from detector.engine import EngineConfig, ExperimentState, process_batch
from detector.events import Assignment
from detector.registration.compiled import CompiledRegistration
from detector.incidents import blast_radius as br

T0 = 1_700_000_000_000
QA = [f"qa-{i}" for i in range(5)]


def _state(registration, events, config=EngineConfig()):
    st = ExperimentState.new(registration.experiment if registration else "exp")
    for i in range(0, len(events), 37):  # several batches, as the worker sees them
        process_batch(st, registration, events[i:i + 37], config)
    return st


def _qa_incident(others=250):
    exp = CompiledRegistration("qa-exp", allowlist=frozenset(QA), max_users=5)
    evs = [Assignment("qa-exp", u, "treatment", True, T0 + i) for i, u in enumerate(QA)]
    evs += [Assignment("qa-exp", f"u{i}", "control" if i % 2 else "treatment", True, T0 + 1000 + i)
            for i in range(others)]
    evs += [Assignment("qa-exp", "u3", "control", True, T0 + 9999)]  # a repeat: counted once
    return exp, _state(exp, evs)


def test_exact_set_of_out_of_target_users_with_first_seen_variant_and_rules():
    exp, st = _qa_incident()
    offs = [o for _, o in br.offenders(st, exp)]
    assert [o.user_id for o in offs] == [f"u{i}" for i in range(250)]
    assert offs[3].first_seen_ms == T0 + 1003 and offs[3].variant == "control"
    assert offs[0].rules == ("allowlist_breach", "max_users_exceeded")
    s = br.summary(st, exp)
    assert s == {"total": 250, "by_rule": {"allowlist_breach": 250, "max_users_exceeded": 250},
                 "recorded_users": 250, "stored_records": 250, "complete": True}


def test_rule_filter_and_rejudging_under_a_changed_registration():
    exp, st = _qa_incident(20)
    # u0..u4 were added to the allowlist on purpose: no longer out of target by that rule;
    # the cap is raised above the enrolled count: nobody is over it any more.
    exp2 = replace(exp, allowlist=frozenset(QA + ["u0", "u1", "u2", "u3", "u4"]), max_users=1000)
    ids = [o.user_id for _, o in br.offenders(st, exp2)]
    assert ids == [f"u{i}" for i in range(5, 20)]
    assert all(o.rules == ("allowlist_breach",) for _, o in br.offenders(st, exp2))
    # as recorded: the engine's records unchanged
    assert len([1 for _ in br.offenders(st, exp2, as_recorded=True)]) == 20
    # rule filter
    assert len(list(br.offenders(st, exp2, rule="max_users_exceeded"))) == 0
    assert len(list(br.offenders(st, exp, rule="max_users_exceeded"))) == 20
    # registration deleted: only `unregistered` records would still count
    assert list(br.offenders(st, None)) == []


def test_segment_and_window_rejudging():
    exp = CompiledRegistration("seg", segments={"country": frozenset({"BR"})}, starts_at=T0, ends_at=T0 + 10_000)
    evs = [Assignment("seg", "in", "a", True, T0 + 1, {"country": "BR"}),
           Assignment("seg", "pt", "a", True, T0 + 2, {"country": "PT"}),
           Assignment("seg", "late", "a", True, T0 + 3_700_000, {"country": "BR"})]  # past the 1 h grace
    st = _state(exp, evs)
    got = {o.user_id: o.rules for _, o in br.offenders(st, exp)}
    assert got == {"pt": ("segment_breach",), "late": ("outside_window",)}
    wider = replace(exp, segments={"country": frozenset({"BR", "PT"})}, ends_at=T0 + 200_000)
    assert list(br.offenders(st, wider)) == []


def test_pages_follow_cursors_to_the_exact_set_and_survive_appends():
    exp, st = _qa_incident(250)
    seen, cursor, pages = [], None, 0
    while True:
        page = br.page(st, exp, limit=60, cursor=cursor)
        pages += 1
        assert ("summary" in page) == (cursor is None)
        seen += [u["user_id"] for u in page["users"]]
        cursor = page["next_cursor"]
        if pages == 2:  # the engine keeps going between pages: new offenders are appended
            process_batch(st, exp, [Assignment("qa-exp", "late-1", "control", True, T0 + 50_000)])
        if not cursor:
            break
    assert pages == 5
    assert seen == [f"u{i}" for i in range(250)] + ["late-1"]
    assert len(seen) == len(set(seen))
    last = br.page(st, exp, limit=251)
    assert last["next_cursor"] is None and last["count"] == 251


def test_bad_and_stale_cursors_are_refused():
    exp, st = _qa_incident(10)
    with pytest.raises(br.CursorError):
        br.page(st, exp, cursor="not-base64!!")
    with pytest.raises(br.CursorError):
        br.page(st, exp, cursor=br.encode_cursor(3, "someone-else"))
    ok = br.page(st, exp, limit=3)["next_cursor"]
    assert br.page(st, exp, cursor=ok)["users"][0]["user_id"] == "u3"
    # the state was rebuilt (e.g. restored in another order): the cursor no longer matches
    fresh = ExperimentState.from_bytes(st.to_bytes())
    fresh._off = dict(reversed(list(fresh._off.items())))
    with pytest.raises(br.CursorError):
        br.page(fresh, exp, cursor=ok)


def test_csv_has_header_then_one_row_per_user_in_chunks():
    exp, st = _qa_incident(250)
    chunks = list(br.csv_chunks(st, exp, chunk_rows=100))
    assert len(chunks) == 1 + 3
    rows = list(csv.reader(io.StringIO("".join(chunks))))
    assert rows[0] == ["user_id", "first_seen_at", "variant", "rules"]
    assert rows[1] == ["u0", "2023-11-14T22:13:21.000Z", "treatment", "allowlist_breach;max_users_exceeded"]
    assert [r[0] for r in rows[1:]] == [f"u{i}" for i in range(250)]


def test_csv_quotes_awkward_ids():
    exp = CompiledRegistration("x", allowlist=frozenset({"ok"}))
    st = _state(exp, [Assignment("x", 'a,"b"', None, True, T0)])
    rows = list(csv.reader(io.StringIO("".join(br.csv_chunks(st, exp)))))
    assert rows[1][0] == 'a,"b"' and rows[1][2] == ""


def test_bound_beyond_which_users_are_counted_not_listed():
    exp = CompiledRegistration("big", allowlist=frozenset())
    cfg = EngineConfig(blast_radius_limit=100)
    st = _state(exp, [Assignment("big", f"u{i}", "a", True, T0 + i) for i in range(300)], cfg)
    s = br.summary(st, exp)
    assert s["stored_records"] == 100 and s["complete"] is False
    assert s["recorded_users"] >= 290  # beyond the bound: a filter count (a lower bound)
