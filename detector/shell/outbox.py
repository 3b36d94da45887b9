"""Findings -> incidents -> the `exposure.alerts` outbox.

One `Lifecycle` per input partition (an experiment lives in one partition), so
the lifecycle is checkpointed together with the engine state it follows. Each
notification is written to `exposure.alerts` (key = incident id, so one
incident's notifications stay in order) before the state that produced it is
checkpointed; a snapshot of every touched incident goes to `exposure.timeline`
for the incident views.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

import orjson

from detector.alerts.lifecycle import Lifecycle, LifecycleConfig
from detector.alerts.notification import Notification
from detector.alerts.timeline import timeline_dict
from detector.engine import rule_breaches
from detector.settings import Topics

log = logging.getLogger(__name__)


class AlertPublisher:
    def __init__(self, config: LifecycleConfig, expectation_of: Callable, topics: Topics, metrics=None,
                 engine_config=None) -> None:
        self.engine_config = engine_config  # the worker's EngineConfig: re-judging reads the same knobs
        self.topics = topics
        self.config = config
        self.expectation_of = expectation_of
        self.metrics = metrics
        self.lifecycles: dict[int, Lifecycle] = {}
        self._written: dict[int, bytes] = {}  # last checkpointed lifecycle bytes per partition
        self.lock = asyncio.Lock()  # the ingest service shares its lock (operator actions vs checkpoints)
        self.producer = None  # set by the ingest service: its AckedSends (settled before each checkpoint)

    def lifecycle(self, partition: int) -> Lifecycle:
        lc = self.lifecycles.get(partition)
        if lc is None:
            lc = self.lifecycles[partition] = Lifecycle(self.config)
        return lc

    # ---- inputs from the ingest service -------------------------------------------------
    async def on_findings(self, partition: int, findings, now_s: float) -> None:
        regs = {f.experiment: self.expectation_of(f.experiment) for f in findings}
        lc = self.lifecycle(partition)
        notes = lc.on_findings(findings, int(now_s * 1000), {k: v for k, v in regs.items() if v is not None})
        await self._publish(lc, notes, {f.experiment for f in findings})

    async def tick(self, now_s: float) -> None:
        now_ms = int(now_s * 1000)
        for lc in self.lifecycles.values():
            due = lc.next_due()
            if due is not None and due <= now_ms:
                await self._publish(lc, lc.tick(now_ms), ())

    async def on_registration_change(self, partition: int, experiment: str, state, now_s: float) -> None:
        lc = self.lifecycle(partition)
        now_ms = int(now_s * 1000)
        lc.record_registration_change(experiment, now_ms)
        exp = self.expectation_of(experiment)
        breaches = (rule_breaches(state, exp) if self.engine_config is None
                    else rule_breaches(state, exp, self.engine_config))
        notes = lc.on_rule_breaches(experiment, breaches, now_ms, reason="registration changed")
        await self._publish(lc, notes, (experiment,))

    # ---- operator actions (API) ----------------------------------------------------------
    def find(self, incident_id: str) -> tuple[Lifecycle, object] | None:
        for lc in self.lifecycles.values():
            inc = lc.incident(incident_id)
            if inc is not None:
                return lc, inc
        return None

    # Under the ingest lock: a lifecycle changed between settling notifications and taking its
    # checkpoint could be checkpointed ahead of an unacknowledged notification.
    async def acknowledge(self, incident_id: str, who: str, now_s: float):
        async with self.lock:
            hit = self.find(incident_id)
            if hit is None:
                return None
            lc, _ = hit
            inc = lc.acknowledge(incident_id, who, int(now_s * 1000))
            await self._snapshot([inc])
            return inc

    async def resolve(self, incident_id: str, who: str, now_s: float):
        async with self.lock:
            hit = self.find(incident_id)
            if hit is None:
                return None
            lc, inc = hit
            await self._publish(lc, lc.resolve(incident_id, who, int(now_s * 1000)), ())
            await self._snapshot([inc])
            return inc

    def incidents(self) -> Iterable:
        for lc in self.lifecycles.values():
            yield from lc.incidents()

    # ---- checkpoints ------------------------------------------------------------------------
    def checkpoint_blob(self, partition: int) -> bytes | None:
        """The lifecycle's bytes if they changed since the last checkpoint, else None."""
        lc = self.lifecycles.get(partition)
        if lc is None:
            return None
        blob = lc.to_bytes()
        if self._written.get(partition) == blob:
            return None
        self._written[partition] = blob
        return blob

    def restore_partition(self, partition: int, blob: bytes | None) -> None:
        self.lifecycles[partition] = Lifecycle.from_bytes(blob, self.config) if blob else Lifecycle(self.config)
        if blob:
            self._written[partition] = blob

    def rewrite_partition(self, partition: int) -> None:
        """The last lifecycle checkpoint was not acknowledged: hand it out again next time."""
        self._written.pop(partition, None)

    def forget_partition(self, partition: int) -> None:
        self.lifecycles.pop(partition, None)
        self._written.pop(partition, None)

    # ---- output -----------------------------------------------------------------------------
    async def _publish(self, lc: Lifecycle, notes: list[Notification], experiments: Iterable[str]) -> None:
        touched = {}
        for n in notes:
            await self.producer.send(self.topics.alerts, key=n.incident_id.encode(), value=n.to_bytes())
            log.info(
                "notification %s queued: %s %s", n.id, n.status, n.rule,
                extra={"experiment": n.experiment, "incident_id": n.incident_id},
            )
            inc = lc.incident(n.incident_id)
            if inc is not None:
                touched[inc.id] = inc
        for exp in experiments:
            for inc in lc.incidents(experiment=exp):
                touched[inc.id] = inc
        await self._snapshot(touched.values())
        if self.metrics is not None:
            for exp in experiments:
                self.metrics.set_open_incidents(exp, len(lc.incidents(experiment=exp, status="firing")))

    async def _snapshot(self, incidents: Iterable) -> None:
        for inc in incidents:
            body = orjson.dumps({"incident": timeline_dict(inc)})
            await self.producer.send(self.topics.timeline, key=inc.id.encode(), value=body)
