"""An incident as on-call reads it: one timeline with everything that happened, in order.

Three sources are merged into the timeline of `timeline_dict(incident)`:

- the lifecycle's own entries (first offending event, detection, notifications queued,
  acknowledgement, registration changes, resolution);
- delivery and mitigation results, which the delivery agent writes to
  `exposure.timeline` and the worker folds into the `incidents` table (`deliveries`);
- the registration history (who changed what, from where), attached to each
  `registration_change` entry it explains.

Entries are ordered by time; at the same millisecond the lifecycle's entries keep the
order they were written in (the first offending event before its detection, a
resolution before the notification that announces it) and delivery results follow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from detector.alerts.times import rfc3339
from detector.timestamps import parse_rfc3339

TITLES = {
    "configuration_changed": "Configuration changed",
    "first_offending_event": "First offending event",
    "detection": "Detected",
    "evidence": "New evidence",
    "notification_queued": "Notification queued",
    "delivery": "Notification delivery",
    "mitigation": "Auto-mitigation",
    "acknowledged": "Acknowledged",
    "registration_change": "Registration changed",
    "resolution": "Resolved",
}
SUMMARY_FIELDS = (
    "id", "experiment", "rule", "status", "severity", "summary", "owner", "started_at", "ended_at",
    "first_offending_event_at", "detected_at", "acknowledged_by", "resolved_by",
)
_DELIVERY_DETAIL = ("sink", "notification_id", "notification_kind", "notification_status", "status", "attempts",
                    "http_status", "duration_ms", "error")


def _ms(value: Any) -> int | None:
    """Epoch ms from epoch ms or an RFC 3339 string."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    try:
        return parse_rfc3339(str(value), strict=False)
    except ValueError:
        return None


def _entry(at_ms: int, kind: str, detail: Mapping[str, Any]) -> dict[str, Any]:
    return {"at": rfc3339(at_ms), "at_ms": at_ms, "kind": kind, "detail": dict(detail)}


def delivery_entries(deliveries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Timeline entries from the delivery records of the `incidents` table."""
    out = []
    for d in deliveries:
        at = _ms(d.get("finished_at"))
        if at is None:
            continue
        kind = "mitigation" if d.get("kind") == "mitigation" else "delivery"
        out.append(_entry(at, kind, {k: d.get(k) for k in _DELIVERY_DETAIL if d.get(k) is not None}))
    return out


def _delivery_key(e: Mapping[str, Any]) -> tuple:
    d = e["detail"]
    return (e["kind"], d.get("sink"), d.get("notification_id"), d.get("status"), d.get("attempts"))


def merged_timeline(incident: Mapping[str, Any], deliveries: Iterable[Mapping[str, Any]] = (),
                    history: Iterable[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """The incident's entries plus delivery results and registration details, in order."""
    entries = []
    for e in incident.get("timeline") or []:
        at = e.get("at_ms") if e.get("at_ms") is not None else _ms(e.get("at"))
        entries.append(_entry(int(at or 0), e["kind"], e.get("detail") or {}))
    written = len(entries)
    have = {_delivery_key(e) for e in entries if e["kind"] in ("delivery", "mitigation")}
    for e in delivery_entries(deliveries):
        if _delivery_key(e) not in have:
            have.add(_delivery_key(e))
            entries.append(e)
    changes = sorted(((_ms(h.get("at")) or 0, h) for h in history), key=lambda x: x[0])
    for e in entries:
        if e["kind"] != "registration_change" or not changes:
            continue
        # The change this entry records: the latest one written before the worker applied it
        # (the writer's clock may run a little ahead of the worker's: allow 5 s).
        before = [h for at, h in changes if at <= e["at_ms"] + 5000]
        if before:
            h = before[-1]
            e["detail"].update({k: h.get(k) for k in ("who", "source", "action", "diff") if h.get(k) is not None})
            e["detail"]["changed_at"] = h.get("at")
    order = {id(e): i for i, e in enumerate(entries)}  # lifecycle entries first, then deliveries
    entries.sort(key=lambda e: (e["at_ms"], order[id(e)] >= written, order[id(e)]))
    return entries


def incident_view(incident: Mapping[str, Any], row: Mapping[str, Any] | None = None,
                  history: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The JSON the API returns for one incident: the incident, its merged timeline, deliveries."""
    row = row or {}
    deliveries = list(row.get("deliveries") or [])
    view = dict(incident)
    view["timeline"] = merged_timeline(incident, deliveries, history)
    view["deliveries"] = [
        {**{k: d.get(k) for k in ("kind", *_DELIVERY_DETAIL) if d.get(k) is not None},
         "finished_at": rfc3339(_ms(d.get("finished_at")))}
        for d in deliveries
    ]
    view["detection_latency_ms"] = _latency(incident)
    return view


def _latency(incident: Mapping[str, Any]) -> int | None:
    """Worker clock when the incident opened minus the first offending event's time."""
    a, b = _ms(incident.get("first_offending_event_at")), _ms(incident.get("started_at"))
    return None if a is None or b is None else max(0, b - a)


def incident_summary(view: Mapping[str, Any]) -> dict[str, Any]:
    """An incident in a list: the summary fields, blast-radius count, last timeline entry."""
    out = {k: view.get(k) for k in SUMMARY_FIELDS}
    br = view.get("blast_radius") or {}
    out["blast_radius"] = {"count": br.get("count", 0)}
    tl = view.get("timeline") or []
    out["timeline_entries"] = len(tl)
    out["last_event"] = ({"at": tl[-1].get("at"), "kind": tl[-1].get("kind")} if tl else None)
    return out


def matches(view: Mapping[str, Any], query: Mapping[str, str]) -> bool:
    """Filters of `GET /v1/incidents`: experiment, rule, status, severity, owner, since, until."""
    for key in ("experiment", "rule", "status", "severity", "owner"):
        if key in query and query[key] and str(view.get(key)) not in query[key].split(","):
            return False
    started = _ms(view.get("started_at"))
    if "since" in query and started is not None and started < (_ms(query["since"]) or 0):
        return False
    if "until" in query and started is not None and started >= (_ms(query["until"]) or 2**62):
        return False
    return True


# ------------------------------------------------------------------------------------- Markdown
# Everything in the Markdown that came from outside (who acknowledged, summaries and experiment
# names from the stream, error texts, JSON) is shown as inline code: nothing in it can become a
# link, an image or markup in the post-mortem it is pasted into. Links are only built from the
# operator's DETECTOR_EXTERNAL_URL.
def _code(text: Any) -> str:
    """`text` as an inline code span whatever it holds (backticks, newlines, brackets)."""
    s = " ".join(str(text).split("\n")).replace("\r", " ")
    longest = run = 0
    for ch in s:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _md_id(text: Any) -> str:
    """Our own identifiers (incident ids, rule names, statuses) as they are when they are plain
    `[A-Za-z0-9_.:-]` words; anything else as inline code."""
    s = str(text)
    return s if s and all(c.isalnum() or c in "_.:-" for c in s) and s.isascii() else _code(s)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def describe(entry: Mapping[str, Any]) -> str:
    """One timeline entry in words (values from outside as inline code)."""
    kind, d = entry["kind"], entry.get("detail") or {}
    if kind == "first_offending_event":
        return "the first enrollment outside the declared population"
    if kind == "configuration_changed":
        return f"flag {d.get('flag', '?')}: {d.get('before') or '(first seen)'} -> {d.get('after', '?')}"
    if kind == "detection":
        return f"{_code(d.get('summary', ''))} (blast radius {_code(d.get('blast_radius'))})"
    if kind == "notification_queued":
        return f"{_md_id(d.get('notification_kind', d.get('status')))} {_md_id(d.get('notification_id'))}"
    if kind in ("delivery", "mitigation"):
        http = f" HTTP {int(d['http_status'])}" if isinstance(d.get("http_status"), int) else ""
        err = f" ({_code(d['error'])})" if d.get("error") else ""
        what = "kill switch" if kind == "mitigation" else _md_id(d.get("sink"))
        attempts = d.get("attempts")
        return (f"{what}: {_md_id(d.get('status'))}{http}" + (f" after {_md_id(attempts)} attempt(s)" if attempts else "")
                + f"{err} {_md_id(d.get('notification_id'))}")
    via = f" (token {_code(d['token'])})" if d.get("token") else ""
    if kind == "acknowledged":
        return f"by {_code(d.get('by'))}{via}"
    if kind == "resolution":
        return f"by {_code(d.get('by'))}{via}" + ("" if d.get("notified", True) else " (before any page went out)")
    if kind == "registration_change":
        parts = []
        if d.get("who"):
            parts.append(f"{_code(d.get('action', 'change'))} by {_code(d['who'])} via {_code(d.get('source', '?'))}")
        diff = d.get("diff")
        if diff:
            parts.append("changes: " + _code(orjson.dumps(diff).decode()[:300]))
        if d.get("rule_in_breach") is False:
            parts.append("rule no longer in breach")
        return "; ".join(parts) or "registration changed"
    return _code(", ".join(f"{k}={v}" for k, v in d.items() if v is not None))


def _readable_times(d: Mapping[str, Any]) -> dict[str, Any]:
    """Epoch-millisecond fields (`..._at`, `..._ts`) as RFC 3339, for people reading a post-mortem."""
    return {k: (rfc3339(v) if isinstance(v, int) and not isinstance(v, bool) and (k.endswith("_at") or k.endswith("_ts"))
                else v) for k, v in d.items()}


def incident_markdown(view: Mapping[str, Any], base_url: str | None = None) -> str:
    """The incident and its merged timeline as Markdown, ready to paste into a post-mortem.

    `base_url` is the operator's DETECTOR_EXTERNAL_URL; without it the link is a relative path.
    """
    br = view.get("blast_radius") or {}
    lat = view.get("detection_latency_ms")
    lines = [
        f"## Incident {_md_id(view['id'])}: {_md_id(view['rule'])} in {_code(view['experiment'])}",
        "",
        f"- Status: **{_md_id(view.get('status'))}**" + (f" (resolved by {_code(view['resolved_by'])})" if view.get("resolved_by") else ""),
        f"- Severity: {_md_id(view.get('severity'))}" + (f"; owner: {_code(view['owner'])}" if view.get("owner") else ""),
        f"- Summary: {_code(view.get('summary'))}",
        f"- First offending event: {_code(view.get('first_offending_event_at'))}",
        f"- Incident opened: {_code(view.get('started_at'))}"
        + (f" ({int(lat)} ms after the first offending event)" if isinstance(lat, int) else ""),
    ]
    if view.get("acknowledged_by"):
        lines.append(f"- Acknowledged by: {_code(view['acknowledged_by'])}")
    if view.get("ended_at"):
        lines.append(f"- Ended: {_code(view['ended_at'])}")
    query = urlencode({"format": "csv", "rule": str(view["rule"])})
    csv_path = f"/v1/experiments/{quote(str(view['experiment']), safe='')}/blast-radius?{query}"
    cli = f"detector blast-radius {view['experiment']} --rule {view['rule']} --format csv"
    lines += [
        f"- Blast radius: {_code(br.get('count', 0))} user(s); full list: {_code((base_url or '').rstrip('/') + csv_path)}"
        f" or {_code(cli)}",
        f"- Observed: {_code(orjson.dumps(_readable_times(view.get('observed') or {})).decode())}",
        f"- Expected: {_code(orjson.dumps(_readable_times(view.get('expected') or {})).decode())}",
        "",
        "| Time (UTC) | Event | Detail |",
        "|---|---|---|",
    ]
    for e in view.get("timeline") or []:
        lines.append(f"| {_cell(_md_id(e['at']))} | {TITLES.get(e['kind'], _md_id(e['kind']))} | {_cell(describe(e))} |")
    return "\n".join(lines) + "\n"
