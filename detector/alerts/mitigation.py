"""Opt-in auto-mitigation: POST once to the registration's `kill_url` when a breach first fires.

The call is signed like every webhook (Standard Webhooks headers, id
`{incident_id}:mitigation`, so the receiver can deduplicate) and made exactly
once, with no retries: a kill switch that fires late is worse than an operator
who knows it failed. The outcome goes on the incident timeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
import msgspec

from .delivery import DeliveryOutcome, RetryPolicy, deliver
from .http import BaseSink, HttpRequest, json_request
from .notification import Notification
from .outbound import KillUrlPolicy
from .signing import Signer
from .times import rfc3339

SCHEMA = "exposure-mitigation/v1"


def mitigation_body(n: Notification) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "id": f"{n.incident_id}:mitigation",
        "incident_id": n.incident_id,
        "action": "kill",
        "experiment": n.experiment,
        "rule": n.rule,
        "severity": n.severity,
        "summary": n.summary,
        "first_offending_event_at": rfc3339(n.first_offending_event_at),
        "detected_at": rfc3339(n.detected_at),
        "blast_radius": {"count": n.blast_radius.count},
    }


@dataclass
class KillSwitchSink(BaseSink):
    type: ClassVar[str] = "kill_switch"

    def build_request(self, notification: Notification) -> HttpRequest:
        return json_request(self.url, mitigation_body(notification))


async def mitigate(
    kill_url: str,
    notification: Notification,
    session: aiohttp.ClientSession | None = None,
    signer: Signer | None = None,
    bearer_token: str | None = None,
    timeout_s: float = 10.0,
    policy: KillUrlPolicy | None = None,
) -> DeliveryOutcome:
    """POST the kill request once; returns the outcome (sink name "mitigation").

    `policy` (`detector.alerts.outbound`) is checked again here: a URL the allowlist no longer
    admits is not called (outcome `rejected`, the reason in `error`). The session should resolve
    through `outbound.GuardedResolver` so that the address connected to is the one checked.
    """
    sink = KillSwitchSink(name="mitigation", url=kill_url, signer=signer, bearer_token=bearer_token)
    mitigation_note = msgspec.structs.replace(notification, id=f"{notification.incident_id}:mitigation")
    problem = policy.url_problem(kill_url) if policy is not None else None
    if problem:
        return DeliveryOutcome(sink="mitigation", notification_id=mitigation_note.id,
                               incident_id=notification.incident_id, status="rejected", attempts=0,
                               http_status=None, duration_ms=0.0, error=f"kill_url refused: {problem}",
                               finished_at=int(time.time() * 1000))
    return await deliver(mitigation_note, sink, session, RetryPolicy(timeout_s=timeout_s, max_attempts=1))
