"""Findings become incidents; incidents become notifications. Pure: no I/O, no clock.

The engine reports a finding on every batch in which a rule sees new offending
evidence. This module turns that stream into what on-call wants to hear:

* one incident per (experiment, rule) while it is in breach, firing then resolved;
  a breach after a resolution is a new incident with a new id;
* the first page within `group_wait` (default 0.5 s; Alertmanager's 30 s is too
  slow for a product whose point is speed), grouped per experiment: incidents
  of the same experiment that open inside the wait go out together, later ones
  wait for `group_interval` after the previous flush (Alertmanager semantics);
* a repeat page every `repeat_interval` (4 h) while firing and not acknowledged;
* a keep-alive `refresh` every `refresh_interval` for sinks that expire alerts
  on their own (Alertmanager's `resolve_timeout`); routing sends these only there;
* resolution after `resolve_quiet_period` (5 min) without new evidence, when the
  registration changes so the rule is no longer in breach, or by an operator.

Every time comes in as `now_ms` from the caller, so the same inputs give the same
notifications with the same ids, on any worker, after any restart. The whole
state serializes to JSON bytes (`to_bytes` / `from_bytes`) for a changelog table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, cast

import msgspec

from detector.engine.rules.base import Finding

from .fingerprint import incident_id as make_incident_id
from .incident import Incident
from .notification import BlastRadius, Notification
from .policy import NotificationPolicy, Subject, is_breach
from .times import parse_duration_ms

ADVISORY_SAMPLE_IDS = 10  # user ids kept on an incident of an advisory rule (unregistered)
SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2, "critical": 3}


@dataclass(frozen=True)
class LifecycleConfig:
    """Timing of the lifecycle, all in milliseconds."""

    group_wait_ms: int = 500
    group_interval_ms: int = 60_000
    repeat_interval_ms: int = 4 * 3_600_000
    resolve_quiet_period_ms: int = 5 * 60_000
    refresh_interval_ms: int | None = 60_000  # None: no keep-alive re-sends
    retention_ms: int = 7 * 86_400_000  # how long resolved incidents stay in views
    max_timeline_entries: int = 500

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> "LifecycleConfig":
        """Build from YAML keys without the `_ms` suffix and duration strings ("500ms", "4h")."""
        raw = dict(raw or {})
        known = {f.name.removesuffix("_ms"): f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            name = known.get(key.removesuffix("_ms"))
            if name is None:
                raise ValueError(f"unknown lifecycle setting {key!r}")
            if name == "max_timeline_entries":
                kwargs[name] = int(value)
            elif value is None:
                kwargs[name] = None
            else:
                kwargs[name] = value if key.endswith("_ms") else parse_duration_ms(value)
        return cls(**kwargs)


class _Group(msgspec.Struct):
    """Per-experiment aggregation group, as in Alertmanager's dispatcher."""

    last_flush_at: int | None = None
    flush_at: int | None = None


class _State(msgspec.Struct):
    incidents: dict[str, Incident] = {}
    open: dict[str, str] = {}  # "experiment\x00rule" -> open incident id
    ordinals: dict[str, int] = {}  # "experiment\x00rule" -> incidents opened so far
    groups: dict[str, _Group] = {}


def _key(experiment: str, rule: str) -> str:
    return f"{experiment}\x00{rule}"


def _field(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _blast_radius(finding: Finding) -> BlastRadius:
    samples = finding.sample_ids
    if type(samples) is not tuple or (samples and type(samples[0]) is not str):  # the engine's are str tuples
        samples = tuple(map(str, samples))  # up to 1,000 ids a finding: not copied on every batch
    return BlastRadius(int(finding.blast_radius or 0), samples)


class Lifecycle:
    """The incident state machine. Feed it findings and ticks; send what it returns."""

    def __init__(self, config: LifecycleConfig | None = None, _state: _State | None = None,
                 policy: NotificationPolicy | None = None):
        self.config = config or LifecycleConfig()
        self.policy = policy  # None: every incident pages on its own (no digests, no observe mode)
        self._s = _state or _State()
        self.digest_changes = 0  # bumped when a digest's membership may have changed (not persisted)

    # ---- persistence -----------------------------------------------------------
    def to_bytes(self) -> bytes:
        return msgspec.json.encode(self._s)

    @classmethod
    def from_bytes(cls, data: bytes, config: LifecycleConfig | None = None,
                   policy: NotificationPolicy | None = None) -> "Lifecycle":
        return cls(config, msgspec.json.decode(data, type=_State), policy)

    def to_dict(self) -> dict[str, Any]:
        return cast("dict[str, Any]", msgspec.to_builtins(self._s))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], config: LifecycleConfig | None = None) -> "Lifecycle":
        return cls(config, msgspec.convert(dict(data), type=_State))

    # ---- inputs ----------------------------------------------------------------
    def on_findings(
        self,
        findings: Iterable[Finding],
        now_ms: int,
        registrations: Mapping[str, Any] | None = None,
    ) -> list[Notification]:
        """Merge a batch of findings into incidents; return notifications now due.

        `findings` are engine `Finding`s; `registrations` maps experiment ->
        CompiledRegistration-like objects (or dicts) for `owner` and `labels`.
        """
        for finding in findings:
            self._merge(finding, now_ms, registrations or {})
        return self.tick(now_ms)

    def on_rule_breaches(
        self, experiment: str, breaches: Mapping[str, bool], now_ms: int, **detail: Any
    ) -> list[Notification]:
        """Resolve open incidents of `experiment` whose rule is no longer in breach.

        Called after a registration change (e.g. the allowlist now covers who was
        seen, or an unregistered experiment got registered). Rules missing from
        `breaches` are left alone.
        """
        out: list[Notification] = []
        for inc in self._open_incidents(experiment):
            if breaches.get(inc.rule) is False:
                self._add(inc, now_ms, "registration_change", rule_in_breach=False, **detail)
                out.extend(self._resolve(inc, now_ms, "registration_change"))
        return out

    def on_cleared(self, experiment: str, rule: str, now_ms: int, kind: str, by: str, **detail: Any) -> list[Notification]:
        """Resolve the open incident of (experiment, rule) because its cause went away.

        `kind` names the timeline entry that says why (e.g. `configuration_changed` when a flag's
        configuration is back within its declaration), `by` the resolution.
        """
        inc = self.open_incident(experiment, rule)
        if inc is None:
            return []
        self._add(inc, now_ms, kind, **detail)
        return self._resolve(inc, now_ms, by)

    def record_registration_change(self, experiment: str, now_ms: int, **detail: Any) -> None:
        """Note a registration change on every open incident of the experiment."""
        for inc in self._open_incidents(experiment):
            self._add(inc, now_ms, "registration_change", **detail)

    def resolve(self, incident_id: str, who: str, now_ms: int, token: str | None = None) -> list[Notification]:
        """Operator resolution. Returns the resolved notification if a page went out.

        `who` is the name the caller gives; `token` the name of the credential that made the
        call (recorded beside it on the timeline when the two differ)."""
        inc = self._s.incidents[incident_id]
        if inc.status != "firing":
            return []
        return self._resolve(inc, now_ms, f"operator:{who}", **_via(who, token))

    def acknowledge(self, incident_id: str, who: str, now_ms: int, token: str | None = None) -> Incident:
        """Someone owns it: stop repeat pages (refreshes continue), note it on the timeline (with
        the credential's name when it differs from `who`, see `resolve`)."""
        inc = self._s.incidents[incident_id]
        if inc.acknowledged_by is None and inc.status == "firing":
            inc.acknowledged_by, inc.acknowledged_at = who, now_ms
            self._add(inc, now_ms, "acknowledged", by=who, **_via(who, token))
        return inc

    def record_mitigation(self, incident_id: str, outcome: Any, now_ms: int) -> None:
        """Append the auto-mitigation (kill_url) call and its result to the timeline."""
        inc = self._s.incidents.get(incident_id)
        if inc is None:
            return
        data = outcome.to_dict() if hasattr(outcome, "to_dict") else dict(outcome)
        self._add(inc, now_ms, "mitigation", **data)

    # ---- time ------------------------------------------------------------------
    def tick(self, now_ms: int) -> list[Notification]:
        """Everything due at `now_ms`: resolutions, group flushes, repeats, refreshes."""
        cfg, out = self.config, []
        for inc in self._open_incidents():
            if now_ms - inc.last_evidence_at >= cfg.resolve_quiet_period_ms:
                out.extend(self._resolve(inc, now_ms, "quiet_period"))
        for experiment in sorted(self._s.groups):
            group = self._s.groups[experiment]
            if group.flush_at is not None and group.flush_at <= now_ms:
                for inc in self._open_incidents(experiment):
                    if inc.pending_page:
                        note = self._page_or_fold(inc, now_ms)
                        if note is not None:
                            out.append(note)
                group.last_flush_at, group.flush_at = now_ms, None
        for inc in self._open_incidents():
            if inc.pages and inc.last_page_at is not None and inc.acknowledged_by is None:
                if now_ms - inc.last_page_at >= cfg.repeat_interval_ms:
                    out.append(self._page(inc, now_ms))
        if cfg.refresh_interval_ms:
            for inc in self._open_incidents():
                if not inc.pages:
                    continue
                last = max(inc.last_page_at or 0, inc.last_refresh_at or 0)
                if now_ms - last >= cfg.refresh_interval_ms:
                    inc.refreshes += 1
                    inc.last_refresh_at = now_ms
                    out.append(self._notification(inc, "refresh", inc.refreshes, now_ms))
        self._forget(now_ms)
        return out

    def next_due(self) -> int | None:
        """Earliest time at which `tick` may have something to do (for a timer)."""
        cfg, times = self.config, []
        for g in self._s.groups.values():
            if g.flush_at is not None:
                times.append(g.flush_at)
        for inc in self._open_incidents():
            times.append(inc.last_evidence_at + cfg.resolve_quiet_period_ms)
            if inc.pages and inc.last_page_at is not None:
                if inc.acknowledged_by is None:
                    times.append(inc.last_page_at + cfg.repeat_interval_ms)
                if cfg.refresh_interval_ms:
                    times.append(max(inc.last_page_at, inc.last_refresh_at or 0) + cfg.refresh_interval_ms)
        return min(times) if times else None

    # ---- views -----------------------------------------------------------------
    def incidents(self, experiment: str | None = None, status: str | None = None) -> list[Incident]:
        """Incidents, oldest first, optionally filtered."""
        items = [
            i for i in self._s.incidents.values()
            if (experiment is None or i.experiment == experiment) and (status is None or i.status == status)
        ]
        return sorted(items, key=lambda i: (i.started_at, i.id))

    def incidents_by_experiment(self, experiments: Iterable[str]) -> dict[str, list[Incident]]:
        """The incidents of each of `experiments` (oldest first), in one pass over all incidents."""
        out: dict[str, list[Incident]] = {e: [] for e in experiments}
        if out:
            for inc in self._s.incidents.values():
                bucket = out.get(inc.experiment)
                if bucket is not None:
                    bucket.append(inc)
            for incs in out.values():
                incs.sort(key=lambda i: (i.started_at, i.id))
        return out

    def incident(self, incident_id: str) -> Incident | None:
        return self._s.incidents.get(incident_id)

    def open_incident(self, experiment: str, rule: str) -> Incident | None:
        iid = self._s.open.get(_key(experiment, rule))
        return self._s.incidents.get(iid) if iid else None

    # ---- internals -------------------------------------------------------------
    def _open_incidents(self, experiment: str | None = None) -> list[Incident]:
        incs = [self._s.incidents[i] for i in self._s.open.values()]
        if experiment is not None:
            incs = [i for i in incs if i.experiment == experiment]
        return sorted(incs, key=lambda i: (i.started_at, i.rule, i.id))

    def _merge(self, finding: Finding, now_ms: int, registrations: Mapping[str, Any]) -> None:
        experiment, rule = finding.experiment, finding.rule
        key = _key(experiment, rule)
        first_at = int(finding.first_offending_event_at or 0)
        detected_at = int(finding.detected_at or now_ms)
        inc = self.open_incident(experiment, rule)
        if inc is None:
            ordinal = self._s.ordinals.get(key, 0)
            self._s.ordinals[key] = ordinal + 1
            inc = Incident(
                id=make_incident_id(experiment, rule, first_at, ordinal),
                experiment=experiment,
                rule=rule,
                first_offending_event_at=first_at,
                detected_at=detected_at,
                started_at=now_ms,
                pending_page=True,
            )
            self._s.incidents[inc.id] = inc
            self._s.open[key] = inc.id
            # An incident opens with its first offending event, or with what the finding names
            # instead (a flag configuration change: `detector.flags.rule.ConfigFinding`).
            opened_by = str(_field(finding, "timeline_kind", None) or "first_offending_event")
            self._add(inc, first_at, opened_by, **dict(_field(finding, "timeline_detail", None) or {}))
            self._add(
                inc, detected_at, "detection",
                summary=finding.summary,
                blast_radius=_blast_radius(finding).count,
                statistic=finding.statistic,
            )
            self._schedule(experiment, now_ms)
        severity = finding.severity or inc.severity
        inc.severity = self.policy.severity(rule, severity) if self.policy is not None else severity
        inc.summary = finding.summary or inc.summary
        inc.observed = dict(finding.observed)
        inc.expected = dict(finding.expected)
        br = _blast_radius(finding)
        if len(br.sample_ids) > ADVISORY_SAMPLE_IDS and not is_breach(rule):
            # An unregistered experiment's "offenders" are all its users: a few ids say enough, and
            # thousands of such incidents must fit in the partition's lifecycle checkpoint.
            br = BlastRadius(br.count, br.sample_ids[:ADVISORY_SAMPLE_IDS])
        inc.blast_radius = br
        inc.statistic = finding.statistic
        inc.last_evidence_at = now_ms
        inc.findings += 1
        reg = registrations.get(experiment)
        if reg is not None:
            inc.owner = _field(reg, "owner") or inc.owner
            inc.labels = dict(_field(reg, "labels") or {}) or inc.labels
            inc.mode = _field(reg, "mode") or inc.mode

    def _schedule(self, experiment: str, now_ms: int) -> None:
        group = self._s.groups.setdefault(experiment, _Group())
        if group.flush_at is not None:
            return
        if group.last_flush_at is None:
            group.flush_at = now_ms + self.config.group_wait_ms
        else:
            group.flush_at = max(now_ms, group.last_flush_at + self.config.group_interval_ms)

    def _page_or_fold(self, inc: Incident, now_ms: int) -> Notification | None:
        """The first page, unless the policy folds the incident into a digest or only records it."""
        if self.policy is not None:
            disposition, group = self.policy.disposition(Subject(
                inc.experiment, inc.rule, inc.severity, inc.owner, inc.labels, inc.mode))
            if disposition != "page":
                inc.pending_page = False
                inc.folded = "observe" if disposition == "observe" else f"digest:{group}"
                self.digest_changes += disposition == "digest"
                self._add(inc, now_ms, "folded", into=disposition, group=group)
                return None
        return self._page(inc, now_ms)

    def folded_incidents(self) -> list[Incident]:
        """Open incidents folded into a digest (their group key is `folded` after `digest:`)."""
        return [i for i in self._open_incidents() if i.folded and i.folded.startswith("digest:")]

    def _page(self, inc: Incident, now_ms: int) -> Notification:
        inc.pages += 1
        inc.pending_page = False
        inc.last_page_at = now_ms
        return self._notification(inc, "firing" if inc.pages == 1 else "repeat", inc.pages, now_ms)

    def _resolve(self, inc: Incident, now_ms: int, by: str, **via: str) -> list[Notification]:
        inc.status, inc.ended_at, inc.resolved_by = "resolved", now_ms, by
        if inc.folded and inc.folded != "observe":
            self.digest_changes += 1
        self._s.open.pop(_key(inc.experiment, inc.rule), None)
        was_paged = inc.pages > 0
        inc.pending_page = False
        self._add(inc, now_ms, "resolution", by=by, notified=was_paged, **via)
        if not self._open_incidents(inc.experiment):
            self._s.groups.pop(inc.experiment, None)
        return [self._notification(inc, "resolved", 1, now_ms)] if was_paged else []

    def _notification(self, inc: Incident, kind: str, n: int, now_ms: int) -> Notification:
        if kind == "resolved":
            nid = f"{inc.id}:resolved"
        elif kind == "refresh":
            nid = f"{inc.id}:refresh:{n}"
        else:
            nid = f"{inc.id}:firing:{n}"
        note = Notification(
            id=nid,
            incident_id=inc.id,
            status="resolved" if kind == "resolved" else "firing",
            kind=kind,  # type: ignore[arg-type]
            sequence=n,
            experiment=inc.experiment,
            rule=inc.rule,
            severity=inc.severity,
            summary=inc.summary,
            started_at=inc.started_at,
            ended_at=inc.ended_at,
            first_offending_event_at=inc.first_offending_event_at,
            detected_at=inc.detected_at,
            observed=inc.observed,
            expected=inc.expected,
            blast_radius=inc.blast_radius,
            owner=inc.owner,
            labels=inc.labels,
            group_key=inc.experiment,
            created_at=now_ms,
            resolved_by=inc.resolved_by,
        )
        if kind != "refresh":
            self._add(inc, now_ms, "notification_queued", notification_id=nid, status=note.status, notification_kind=kind)
        return note

    def _add(self, inc: Incident, at: int, kind: str, **detail: Any) -> None:
        inc.add(at, kind, **detail)
        overflow = len(inc.timeline) - self.config.max_timeline_entries
        if overflow > 0:  # keep the opening entries and the most recent ones
            del inc.timeline[10 : 10 + overflow]

    def _forget(self, now_ms: int) -> None:
        """Drop resolved incidents past retention (their ordinals stay, so ids never repeat)."""
        cutoff = now_ms - self.config.retention_ms
        for iid in [i for i, inc in self._s.incidents.items() if inc.status == "resolved" and (inc.ended_at or 0) < cutoff]:
            del self._s.incidents[iid]


def _via(who: str, token: str | None) -> dict[str, str]:
    """The timeline's `token` detail: the authenticated credential, when it is not `who` itself."""
    return {"token": token} if token and token != who else {}
