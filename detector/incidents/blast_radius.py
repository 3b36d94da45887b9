"""The blast radius: exactly which users an experiment reached out of target.

The engine keeps one record per out-of-target user (`ExperimentState.offenders()`:
user id, first-seen event time, variant, rules), up to `EngineConfig.blast_radius_limit`
users (default 1M) and an approximate distinct count beyond. This module turns those
records into what an incident owner feeds a cleanup migration: pages of JSON and a CSV.

Re-judging. A record says why the user was out of target *when they enrolled*. If the
registration changed since (say the allowlist now includes a user on purpose), the
user is no longer out of target. By default each record is re-judged against the
current registration and only rules still in breach are reported; `as_recorded=True`
reports the records unchanged. Each rule says when its record still holds (its
`still_holds`, in its module under detector/engine/rules/); for example:

- allowlist_breach: the user is still not on the allowlist;
- segment_breach: the user's enrolled attributes still fall outside the segments;
- outside_window: the user's enrolled event times still fall outside the window;
- max_users_exceeded: the experiment is still over its cap (which users are "over"
  is the arrival order at the time: the users who enrolled after the cap was reached);
- unregistered: the experiment is still unregistered.
A record of a rule the registration no longer declares no longer holds.

Paging. Records are kept in the order the engine first recorded them and only ever
appended, so a cursor is the position of the next record plus the id just before it
(a cheap check that the state was not rebuilt in between: then the cursor is refused).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from detector.alerts.times import rfc3339
from detector.engine.rules import BY_NAME

CSV_HEADER = ("user_id", "first_seen_at", "variant", "rules")
RULE_SEPARATOR = ";"
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000


class CursorError(ValueError):
    """A cursor that is malformed or no longer matches the state."""


@dataclass(frozen=True, slots=True)
class Offender:
    user_id: str
    first_seen_ms: int
    variant: str | None
    rules: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "first_seen_at": rfc3339(self.first_seen_ms),
            "first_seen_ms": self.first_seen_ms,
            "variant": self.variant,
            "rules": list(self.rules),
        }

    def csv_row(self) -> tuple[str, str, str, str]:
        return (csv_cell(self.user_id), rfc3339(self.first_seen_ms) or "", csv_cell(self.variant or ""),
                RULE_SEPARATOR.join(self.rules))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP "CSV injection"): a value starting with
    `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'`. The JSON form keeps the raw value."""
    return "'" + text if text.startswith(_FORMULA_START) else text


# ------------------------------------------------------------------------------------ judging
class Judge:
    """Which of a record's rules still hold under the current registration (see module doc).

    Each rule answers for its own records (`Rule.still_holds` in detector.engine.rules)."""

    def __init__(self, state: Any, registration: Any | None, *, as_recorded: bool = False) -> None:
        self.as_recorded = as_recorded
        self.state = state
        self.exp = registration
        self._holds: dict[str, Callable[[str], bool]] = {}

    def rules(self, uid: str, recorded: Iterable[str]) -> tuple[str, ...]:
        if self.as_recorded:
            return tuple(recorded)
        return tuple(r for r in recorded if self.holds(uid, r))

    def holds(self, uid: str, rule: str) -> bool:
        pred = self._holds.get(rule)
        if pred is None:
            r = BY_NAME.get(rule)
            # a rule the registration no longer declares (or this build does not know): no longer holds
            pred = r.still_holds(self.state, self.exp) if r is not None and r.active(self.exp) else _never
            self._holds[rule] = pred
        return pred(uid)


def _never(uid: str) -> bool:
    return False


def offenders(state: Any, registration: Any | None = None, *, rule: str | None = None,
              as_recorded: bool = False, start: int = 0) -> Iterator[tuple[int, Offender]]:
    """(position, Offender) for every stored record at or after `start` still out of target.

    Takes a snapshot of the records first, so the caller may await between items while
    the engine keeps appending.
    """
    judge = Judge(state, registration, as_recorded=as_recorded)
    records = list(islice(state.offenders(), start, None))
    for i, (uid, ts, variant, recorded) in enumerate(records, start):
        rules = judge.rules(uid, recorded)
        if not rules or (rule is not None and rule not in rules):
            continue
        yield i, Offender(uid, int(ts), variant, rules)


# ------------------------------------------------------------------------------------ paging
def encode_cursor(position: int, previous_uid: str) -> str:
    raw = f"{position}:{previous_uid}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MAX_CURSOR_POSITION = 2**53  # far beyond any state; keeps islice and friends away from overflow


def decode_cursor(cursor: str) -> tuple[int, str]:
    if len(cursor) > 2048:
        raise CursorError("malformed cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        pos, _, uid = raw.partition(":")
        position = int(pos)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise CursorError("malformed cursor") from None
    if not 1 <= position <= MAX_CURSOR_POSITION or not uid:
        raise CursorError("malformed cursor")
    return position, uid


def _check_cursor(state: Any, position: int, uid: str) -> None:
    before = next(islice(state.offenders(), position - 1, None), None)
    if before is None or before[0] != uid:
        raise CursorError("stale cursor: the experiment's state was rebuilt since; start again without a cursor")


def summary(state: Any, registration: Any | None = None, *, as_recorded: bool = False,
            rule: str | None = None) -> dict[str, Any]:
    """Counts: users still out of target among the stored records, per rule, and the bound."""
    stored = 0
    matching = 0
    by_rule: dict[str, int] = {}
    for _, off in offenders(state, registration, as_recorded=as_recorded):
        stored += 1
        if rule is None or rule in off.rules:
            matching += 1
        for r in off.rules:
            by_rule[r] = by_rule.get(r, 0) + 1
    recorded_total = int(getattr(state, "offender_count", 0) or 0)
    records = sum(1 for _ in state.offenders())
    return {
        "total": matching,
        "by_rule": by_rule,
        "recorded_users": recorded_total,  # every out-of-target user the engine counted
        "stored_records": records,  # of which kept with their id
        "complete": recorded_total <= records,  # False: beyond the id bound, counted only
    }


def page(state: Any, registration: Any | None = None, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None,
         rule: str | None = None, as_recorded: bool = False) -> dict[str, Any]:
    """One page of offenders and the cursor of the next (None at the end)."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    start = 0
    if cursor:
        start, uid = decode_cursor(cursor)
        _check_cursor(state, start, uid)
    users: list[Offender] = []
    next_cursor = None
    last_pos = None
    for pos, off in offenders(state, registration, rule=rule, as_recorded=as_recorded, start=start):
        if len(users) == limit:
            next_cursor = encode_cursor((last_pos or 0) + 1, users[-1].user_id)
            break
        users.append(off)
        last_pos = pos
    body: dict[str, Any] = {
        "experiment": getattr(state, "experiment", None),
        "rule": rule,
        "as_recorded": as_recorded,
        "limit": limit,
        "count": len(users),
        "users": [u.to_dict() for u in users],
        "next_cursor": next_cursor,
    }
    if not cursor:  # the full counts cost a pass over the records: first page only
        body["summary"] = summary(state, registration, as_recorded=as_recorded, rule=rule)
    return body


def csv_text(rows: Iterable[Offender], header: bool = True) -> str:
    """Rows as CSV (RFC 4180, CRLF line ends as the csv module writes them)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    if header:
        w.writerow(CSV_HEADER)
    for off in rows:
        w.writerow(off.csv_row())
    return buf.getvalue()


def csv_chunks(state: Any, registration: Any | None = None, *, rule: str | None = None,
               as_recorded: bool = False, chunk_rows: int = 5000) -> Iterator[str]:
    """The whole blast radius as CSV text in chunks (header first), for a streaming response."""
    yield csv_text((), header=True)
    batch: list[Offender] = []
    for _, off in offenders(state, registration, rule=rule, as_recorded=as_recorded):
        batch.append(off)
        if len(batch) >= chunk_rows:
            yield csv_text(batch, header=False)
            batch = []
    if batch:
        yield csv_text(batch, header=False)
