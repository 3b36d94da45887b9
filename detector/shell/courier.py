"""Delivery of outbox notifications: the work of the Faust agent on `exposure.alerts`.

For each notification and each routed sink: skip if already delivered (the
`deliveries` table, a changelog-backed Faust table, survives restarts), else
deliver with retries, record the outcome, and append it to the incident's
timeline. A notification that cannot be delivered before its deadline is
dead-lettered, counted and logged. The `webhook-id` is the notification id, so
a receiver can also drop the one duplicate a crash between its 2xx and our
table write can cause.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping

import aiohttp
import orjson

from detector.alerts.delivery import deliver
from detector.alerts.mitigation import mitigate
from detector.alerts.notification import Notification
from detector.alerts.outbound import GuardedResolver, KillUrlPolicy
from detector.alerts.ratelimit import RateLimiter
from detector.alerts.routing import AlertingConfig
from detector.settings import Topics

log = logging.getLogger(__name__)


class Courier:
    def __init__(self, config: AlertingConfig, registration_of, topics: Topics, metrics=None,
                 kill_policy: KillUrlPolicy | None = None, store=None) -> None:
        self.topics = topics
        self.config = config
        # `store`: a changelog-backed table the rate limiter keeps its windows in (and the summaries sent).
        self.store = {} if store is None else store
        self.limiter = RateLimiter(config.policy, self.store)
        self.registration_of = registration_of
        self.metrics = metrics
        # The kill switch may only call what the operator allows (checked again at send time,
        # and on every address the name resolves to, by its own session's resolver).
        self.kill_policy = kill_policy if kill_policy is not None else KillUrlPolicy()
        self.session: aiohttp.ClientSession | None = None
        self.kill_session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        if self.kill_session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.kill_policy), use_dns_cache=False)
            self.kill_session = aiohttp.ClientSession(connector=connector)

    async def stop(self) -> None:
        for name in ("session", "kill_session"):
            session = getattr(self, name)
            if session is not None:
                await session.close()
                setattr(self, name, None)

    async def handle(self, raw: bytes, deliveries: MutableMapping, send) -> None:
        """Deliver one outbox record. `send(topic, key, value)` writes to Kafka."""
        await self.start()
        try:
            n = Notification.from_bytes(raw)
        except Exception as exc:  # a corrupt outbox record must not wedge the agent
            log.error("unreadable outbox record dropped: %s", exc)
            return
        sinks = self.config.sinks_for(n)
        # Stable order per incident: sinks are delivered one after another, each to completion.
        for sink in sinks:
            key = f"{sink.name}|{n.id}"
            if deliveries.get(key) is not None:
                continue
            if not self.limiter.admit(sink.name, n, int(time.time() * 1000)):
                deliveries[key] = "held"
                log.info("notification %s held back by the rate limit of %s", n.id, sink.name,
                         extra={"experiment": n.experiment, "incident_id": n.incident_id})
                continue
            deadline_at = n.created_at / 1000 + self.config.delivery.deadline_s if n.created_at else None
            outcome = await deliver(n, sink, self.session, self.config.delivery, deadline_at=deadline_at)
            deliveries[key] = outcome.status
            await self._record(n, outcome, send)
        kill_url = getattr(self.registration_of(n.experiment), "kill_url", None)
        if kill_url and n.is_first_page:
            key = f"mitigation|{n.incident_id}"
            if deliveries.get(key) is None:
                outcome = await mitigate(kill_url, n, self.kill_session, signer=self.config.mitigation_signer,
                                         policy=self.kill_policy)
                deliveries[key] = outcome.status
                await self._record(n, outcome, send, kind="mitigation")

    async def flush_held(self, send, now_s: float | None = None) -> None:
        """Deliver the summaries of rate-limit windows that held something back (a timer calls this)."""
        now_ms = int((time.time() if now_s is None else now_s) * 1000)
        due = self.limiter.due_summaries(now_ms, list(self.config.sinks))
        if not due:
            return
        await self.start()
        for name, n in due:
            key = f"sent|{name}|{n.id}"
            sink = self.config.sinks.get(name)
            if sink is None or self.store.get(key) is not None:
                continue
            outcome = await deliver(n, sink, self.session, self.config.delivery,
                                    deadline_at=now_ms / 1000 + self.config.delivery.deadline_s)
            self.store[key] = outcome.status
            await self._record(n, outcome, send)

    async def _record(self, n: Notification, outcome, send, kind: str = "delivery") -> None:
        if self.metrics is not None:
            self.metrics.record_notification(
                outcome.sink, "sent" if outcome.delivered else "dropped", outcome.duration_ms / 1000
            )
        if not n.incident_id.startswith(("digest:", "held:")):  # those have no incident of their own
            entry = {kind: {**outcome.to_dict(), "notification_status": n.status, "notification_kind": n.kind}}
            await send(self.topics.timeline, n.incident_id.encode(), orjson.dumps(entry))
        if outcome.delivered:
            log.info(
                "%s %s delivered to %s after %d attempt(s)", kind, n.id, outcome.sink, outcome.attempts,
                extra={"experiment": n.experiment, "incident_id": n.incident_id},
            )
        else:
            log.error(
                "%s %s to %s gave up (%s, %s): dead-lettered", kind, n.id, outcome.sink, outcome.status, outcome.error,
                extra={"experiment": n.experiment, "incident_id": n.incident_id},
            )
            await send(self.topics.deadletter, n.id.encode(), n.to_bytes())


def fold_timeline(current: dict | None, entry: dict) -> dict:
    """Merge one `exposure.timeline` record into the incident view kept in the `incidents` table."""
    view = dict(current or {"incident": None, "deliveries": []})
    if "incident" in entry:
        view["incident"] = entry["incident"]
    for kind in ("delivery", "mitigation"):
        if kind in entry:
            view["deliveries"] = [*view.get("deliveries", []), {"kind": kind, **entry[kind]}][-200:]
    view["updated_at"] = int(time.time() * 1000)
    return view
