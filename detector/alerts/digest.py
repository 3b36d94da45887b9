"""Digests: one notification for many incidents of one group (Alertmanager's route `group_by`). Pure.

The lifecycle folds an incident into a digest instead of paging it (see `policy.py`); its open
folded incidents, across every partition this worker owns, are the digest's members. `tick`
compares the members of each group with what the group last announced:

* new members: a digest after `group_wait` (the group's first) or `group_interval` (later ones),
  listing every member with its observed exposure and which ones are new;
* no change while firing: the same digest again every `repeat_interval`;
* members that resolve (e.g. their experiment got registered) leave silently; when none is
  left, the digest resolves (one `resolved` notification).

Ids are deterministic: `digest:{slug}:{n}` for the n-th digest of the group and
`digest:{slug}:{n}:resolved`, where slug is a hash of the group key. The per-group record
(n, members announced, last flush) is written to `store` (a changelog-backed table in the
worker) whenever it changes, so a restarted worker continues the numbering: if it crashed
after queueing a digest but before the record reached the table, it re-derives the same id,
and delivery drops the repeat (it deduplicates by notification id).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

import msgspec

from .incident import Incident
from .lifecycle import SEVERITY_RANK
from .notification import BlastRadius, Notification
from .policy import NotificationPolicy, group_slug
from .store import read_record, write_record

MAX_LISTED = 500  # members listed in one digest body; the count is always complete


class _GroupRecord(msgspec.Struct):
    seq: int = 0
    sent: list[str] = []  # incident ids the last digest announced (minus those resolved since)
    firing: bool = False
    last_flush_at: int | None = None
    flush_at: int | None = None  # not persisted meaningfully: re-derived after a restart


STORE_PREFIX = "digest|"


def _group_labels(key: str) -> dict[str, str]:
    """`0:owner=payments,team=x` -> {"owner": "payments", "team": "x"}."""
    body = key.split(":", 1)[1] if ":" in key else key
    out = {}
    for part in body.split(","):
        name, _, value = part.partition("=")
        if name:
            out[name] = value
    return out


class Digests:
    def __init__(self, policy: NotificationPolicy, store: MutableMapping[str, Any] | None = None) -> None:
        self.policy = policy
        self.store: MutableMapping[str, Any] = {} if store is None else store
        self._groups: dict[str, _GroupRecord] = {}
        self._loaded = False  # groups recorded in the store before a restart are loaded on the first tick

    def _group(self, key: str) -> _GroupRecord:
        g = self._groups.get(key)
        if g is None:
            g = self._groups[key] = read_record(self.store, STORE_PREFIX + key, _GroupRecord)
            g.flush_at = None
        return g

    def _save(self, key: str, g: _GroupRecord) -> None:
        write_record(self.store, STORE_PREFIX + key, g)

    def next_due(self) -> int | None:
        times = [g.flush_at for g in self._groups.values() if g.flush_at is not None]
        for key, g in self._groups.items():
            if g.firing and g.last_flush_at is not None:
                times.append(g.last_flush_at + self.policy.policy_of_key(key).repeat_interval_ms)
        return min(times) if times else None

    def tick(self, folded: Iterable[Incident], now_ms: int,
             exposure_of: Callable[[str], dict[str, Any] | None] = lambda _: None) -> list[Notification]:
        """Digests due at `now_ms`, given every open folded incident (`Incident.folded`)."""
        if not self._loaded:
            self._loaded = True
            for k in [k for k in list(self.store.keys()) if str(k).startswith(STORE_PREFIX)]:
                self._group(str(k)[len(STORE_PREFIX):])  # a firing group whose members all went resolves
        members: dict[str, dict[str, Incident]] = {}
        for inc in folded:
            key = (inc.folded or "").removeprefix("digest:")
            members.setdefault(key, {})[inc.id] = inc
        out: list[Notification] = []
        for key in sorted(set(members) | set(self._groups)):
            cur = members.get(key, {})
            g = self._group(key)
            gp = self.policy.policy_of_key(key)
            if not cur:
                g.flush_at = None
                if g.firing:
                    g.firing, g.sent = False, []
                    out.append(self._notification(key, g, [], [], now_ms, exposure_of, resolved=True))
                    self._save(key, g)
                elif key not in members and g.seq == 0:
                    self._groups.pop(key, None)
                continue
            sent = set(g.sent)
            if sent - cur.keys():  # members resolved since: leave silently
                g.sent = [i for i in g.sent if i in cur]
                self._save(key, g)
            new = sorted(set(cur) - set(g.sent))
            if new and g.flush_at is None:
                if not g.firing or g.last_flush_at is None:
                    g.flush_at = now_ms + gp.group_wait_ms
                else:
                    g.flush_at = max(now_ms, g.last_flush_at + gp.group_interval_ms)
            repeat = g.firing and g.last_flush_at is not None and now_ms - g.last_flush_at >= gp.repeat_interval_ms
            if (g.flush_at is not None and now_ms >= g.flush_at) or repeat:
                g.seq += 1
                g.firing = True
                g.sent = sorted(cur)
                g.last_flush_at, g.flush_at = now_ms, None
                out.append(self._notification(key, g, list(cur.values()), new, now_ms, exposure_of))
                self._save(key, g)
        return out

    def _notification(self, key: str, g: _GroupRecord, incs: list[Incident], new: list[str], now_ms: int,
                      exposure_of: Callable[[str], dict[str, Any] | None], resolved: bool = False) -> Notification:
        slug = group_slug(key)
        labels = _group_labels(key)
        incs = sorted(incs, key=lambda i: (i.experiment, i.id))
        new_ids = set(new)
        listed = []
        for inc in incs[:MAX_LISTED]:
            item: dict[str, Any] = {"experiment": inc.experiment, "rule": inc.rule, "incident_id": inc.id,
                                    "owner": inc.owner, "new": inc.id in new_ids}
            exposure = exposure_of(inc.experiment)
            if exposure is None:
                exposure = {k: inc.observed.get(k) for k in ("eligible_users", "enrolled_users") if k in inc.observed}
            item.update(exposure)
            listed.append(item)
        rules = sorted({i.rule for i in incs}) or [labels.get("rule") or "unregistered"]
        rule = rules[0] if len(rules) == 1 else "digest"
        severity = max((i.severity for i in incs), key=lambda s: SEVERITY_RANK.get(s, 0), default="info")
        owner = labels.get("owner") or None
        where = ", ".join(f"{k}={v}" for k, v in labels.items() if v and k != "rule")
        names = ", ".join(i.experiment for i in incs[:10]) + (f", ... (+{len(incs) - 10} more)" if len(incs) > 10 else "")
        what = "unregistered experiments" if rule == "unregistered" else f"incidents ({', '.join(rules)})"
        if resolved:
            summary = f"digest resolved: no open {what}" + (f" for {where}" if where else "")
        else:
            summary = (f"{len(incs)} {what}" + (f" for {where}" if where else "") + f" ({len(new)} new): {names}"
                       + ("; register them (detector discover --write DIR) or set them to observe" if rule == "unregistered" else ""))
        starts = [i.started_at for i in incs] or [now_ms]
        firsts = [i.first_offending_event_at for i in incs] or [now_ms]
        return Notification(
            id=f"digest:{slug}:{g.seq}:resolved" if resolved else f"digest:{slug}:{g.seq}",
            incident_id=f"digest:{slug}",
            status="resolved" if resolved else "firing",
            kind="resolved" if resolved else ("firing" if g.seq == 1 else "repeat"),
            sequence=g.seq,
            experiment="*",
            rule=rule,
            severity=severity,
            summary=summary,
            started_at=min(starts),
            ended_at=now_ms if resolved else None,
            first_offending_event_at=min(firsts),
            detected_at=min(i.detected_at for i in incs) if incs else now_ms,
            observed={"digest": {"group": labels, "count": len(incs), "new": len(new),
                                 "listed": len(listed), "experiments": listed}},
            expected={"registered": False} if rule == "unregistered" else {},
            blast_radius=BlastRadius(sum(int(i.blast_radius.count) for i in incs)),
            owner=owner,
            labels={k: v for k, v in labels.items() if k not in ("owner", "rule", "experiment", "severity") and v},
            group_key=key,
            created_at=now_ms,
            resolved_by="members_resolved" if resolved else None,
        )
