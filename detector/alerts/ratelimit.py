"""Rate limit on pages per sink, with a summary of what was held back. Pure.

Each sink may take at most `max` notifications in each fixed window of `per` (windows are
aligned to the epoch, so every worker and every restart agrees on them). Beyond that,
notifications of advisory rules (digests, `unregistered`) are held back; a breach is never
held: it is delivered at once and counts against the budget. Keep-alive refreshes do not
count. When a window that held something is over, `due_summaries` hands back one summary
notification for that sink (id `held:{sink}:{window start ms}`) naming what was held back.

The per-sink record is written to `store` on every change (a changelog-backed table in the
worker), so a restart neither forgets the held list nor resets the count of the window.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import msgspec

from .notification import BlastRadius, Notification
from .policy import NotificationPolicy, is_breach
from .store import read_record, write_record
from .times import rfc3339

MAX_HELD_LISTED = 200
STORE_PREFIX = "ratelimit|"


class _Held(msgspec.Struct, array_like=True):
    id: str
    experiment: str
    rule: str
    status: str


class _SinkRecord(msgspec.Struct):
    window: int = 0  # start of the current window (epoch ms)
    sent: int = 0
    held: list[_Held] = []
    held_total: int = 0
    pending: list[tuple[int, int, list[_Held]]] = []  # (window, total held, listed) awaiting a summary




class RateLimiter:
    def __init__(self, policy: NotificationPolicy, store: MutableMapping[str, Any] | None = None) -> None:
        self.policy = policy
        self.store: MutableMapping[str, Any] = {} if store is None else store
        self._sinks: dict[str, _SinkRecord] = {}

    def _record(self, sink: str) -> _SinkRecord:
        rec = self._sinks.get(sink)
        if rec is None:
            rec = read_record(self.store, STORE_PREFIX + sink, _SinkRecord)
            self._sinks[sink] = rec
        return rec

    def _roll(self, sink: str, rec: _SinkRecord, now_ms: int, per_ms: int) -> None:
        window = now_ms - now_ms % per_ms
        if window != rec.window:
            if rec.held_total:
                rec.pending.append((rec.window, rec.held_total, rec.held))
            rec.window, rec.sent, rec.held, rec.held_total = window, 0, [], 0

    def admit(self, sink: str, n: Notification, now_ms: int) -> bool:
        """True: deliver now. False: held back (listed in the window's summary)."""
        limit = self.policy.limit_for(sink)
        if limit is None or n.kind == "refresh" or n.id.startswith("held:"):
            return True
        rec = self._record(sink)
        self._roll(sink, rec, now_ms, limit.per_ms)
        if is_breach(n.rule) and not n.incident_id.startswith("digest:") or rec.sent < limit.max_pages:
            rec.sent += 1
            admitted = True
        else:
            rec.held_total += 1
            if len(rec.held) < MAX_HELD_LISTED:
                rec.held.append(_Held(n.id, n.experiment, n.rule, n.status))
            admitted = False
        write_record(self.store, STORE_PREFIX + sink, rec)
        return admitted

    def due_summaries(self, now_ms: int, sinks: list[str]) -> list[tuple[str, Notification]]:
        """(sink, summary) for every finished window that held something back."""
        out = []
        for sink in sinks:
            limit = self.policy.limit_for(sink)
            if limit is None:
                continue
            rec = self._record(sink)
            before = (rec.window, len(rec.pending))
            self._roll(sink, rec, now_ms, limit.per_ms)
            if not rec.pending:
                if (rec.window, len(rec.pending)) != before:
                    write_record(self.store, STORE_PREFIX + sink, rec)
                continue
            for window, total, held in rec.pending:
                out.append((sink, _summary(sink, window, total, held, limit.max_pages, limit.per_ms, now_ms)))
            rec.pending = []
            write_record(self.store, STORE_PREFIX + sink, rec)
        return out


def _summary(sink: str, window: int, total: int, held: list[_Held], max_pages: int, per_ms: int,
             now_ms: int) -> Notification:
    experiments = sorted({h.experiment for h in held})
    names = ", ".join(experiments[:10]) + (f", ... (+{len(experiments) - 10} more)" if len(experiments) > 10 else "")
    return Notification(
        id=f"held:{sink}:{window}",
        incident_id=f"held:{sink}",
        status="firing",
        kind="firing",
        sequence=1,
        experiment="*",
        rule="rate_limited",
        severity="info",
        summary=(f"{total} notification(s) held back by the rate limit of {sink} ({max_pages} per "
                 f"{per_ms // 1000} s) between {rfc3339(window)} and {rfc3339(window + per_ms)}: {names}. "
                 "Breaches were not held; see /v1/incidents for every incident."),
        started_at=window,
        ended_at=None,
        first_offending_event_at=window,
        detected_at=window + per_ms,
        observed={"held_back": total, "listed": [{"id": h.id, "experiment": h.experiment, "rule": h.rule, "status": h.status}
                                                 for h in held]},
        expected={"max": max_pages, "per_s": per_ms // 1000},
        blast_radius=BlastRadius(0),
        group_key=f"held:{sink}",
        created_at=now_ms,
    )
