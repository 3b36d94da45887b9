"""Slack incoming webhook: `text` (notification fallback) plus Block Kit `blocks`.

Slack answers 200 `ok`; 429 (with Retry-After) and 5xx are retried; other 4xx
(invalid_payload, no_service, channel archived) are permanent.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..http import BaseSink, HttpRequest, json_request
from ..notification import Notification
from ..times import rfc3339

_EMOJI = {"firing": ":rotating_light:", "resolved": ":white_check_mark:"}


def message(n: Notification, incident_url: str = "") -> dict[str, Any]:
    state = "RESOLVED" if n.status == "resolved" else ("FIRING" if n.kind == "firing" else "STILL FIRING")
    text = f"{_EMOJI[n.status]} [{state}] {n.severity} {n.rule} in {n.experiment}: {n.summary}"
    fields = [
        f"*Experiment*\n`{n.experiment}`",
        f"*Rule*\n{n.rule}",
        f"*Severity*\n{n.severity}",
        f"*Blast radius*\n{n.blast_radius.count} user(s)",
        f"*First offending event*\n{rfc3339(n.first_offending_event_at)}",
        f"*Owner*\n{n.owner or '-'}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"[{state}] {n.rule} in {n.experiment}"[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": n.summary[:3000] or n.rule}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if n.blast_radius.sample_ids:
        sample = ", ".join(n.blast_radius.sample_ids[:20])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Sample users*: {sample}"[:3000]}})
    context = f"incident `{n.incident_id}`"
    if n.status == "resolved":
        context += f" · resolved {rfc3339(n.ended_at)} by {n.resolved_by}"
    if incident_url:
        context += f" · <{incident_url}|timeline>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": text, "blocks": blocks}


class SlackSink(BaseSink):
    type: ClassVar[str] = "slack"

    def build_request(self, notification: Notification) -> HttpRequest:
        return json_request(self.url, message(notification, self.incident_url(notification)))
