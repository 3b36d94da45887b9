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
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from detector.alerts.digest import Digests
from detector.alerts.lifecycle import Lifecycle, LifecycleConfig
from detector.alerts.notification import Notification
from detector.alerts.policy import NotificationPolicy, is_breach
from detector.alerts.timeline import timeline_dict
from detector.engine import rule_breaches
from detector.settings import Topics

log = logging.getLogger(__name__)
# At most this often a view snapshot (exposure.timeline, folded into every worker's incidents table)
# of an incident that pages nobody: an unregistered experiment has new evidence in every batch. The
# owning worker's API reads its live lifecycle; the table other workers read lags by this at most.
SNAPSHOT_EVERY_S = 15.0


class AlertPublisher:
    def __init__(self, config: LifecycleConfig, registration_of: Callable, topics: Topics, metrics=None,
                 policy: NotificationPolicy | None = None, digest_store=None,
                 exposure_of: Callable[[str], dict | None] | None = None, engine_config=None) -> None:
        self.engine_config = engine_config  # the worker's EngineConfig: re-judging reads the same knobs
        self.topics = topics
        self.config = config
        self.policy = policy
        # Digests span every partition this worker owns: their members are the open folded incidents.
        self.digests = Digests(policy, digest_store) if policy is not None else None
        self.exposure_of = exposure_of or (lambda _: None)
        self._digest_seen = -1  # sum of the lifecycles' digest_changes at the last digest tick
        self._snapped: dict[str, float] = {}  # incident id -> monotonic time of its last view snapshot
        self._unsnapped: dict[str, Any] = {}  # folded incidents changed since their last snapshot
        self.registration_of = registration_of
        self.metrics = metrics
        self.lifecycles: dict[int, Lifecycle] = {}
        self._written: dict[int, bytes] = {}  # last checkpointed lifecycle bytes per partition
        self.lock = asyncio.Lock()  # the ingest service shares its lock (operator actions vs checkpoints)
        self.producer: Any = None  # set by the ingest service: its AckedSends (settled before each checkpoint)

    def lifecycle(self, partition: int) -> Lifecycle:
        lc = self.lifecycles.get(partition)
        if lc is None:
            lc = self.lifecycles[partition] = Lifecycle(self.config, policy=self.policy)
        return lc

    # ---- inputs from the ingest service -------------------------------------------------
    async def on_findings(self, partition: int, findings, now_s: float) -> None:
        regs = {f.experiment: self.registration_of(f.experiment) for f in findings}
        lc = self.lifecycle(partition)
        notes = lc.on_findings(findings, int(now_s * 1000), {k: v for k, v in regs.items() if v is not None})
        await self._publish(lc, notes, {f.experiment for f in findings})

    async def tick(self, now_s: float) -> None:
        now_ms = int(now_s * 1000)
        for lc in self.lifecycles.values():
            due = lc.next_due()
            if due is not None and due <= now_ms:
                await self._publish(lc, lc.tick(now_ms), ())
        await self._tick_digests(now_ms)
        if self._unsnapped:
            cutoff = time.monotonic() - SNAPSHOT_EVERY_S
            ready = [inc for iid, inc in self._unsnapped.items() if self._snapped.get(iid, -1e9) <= cutoff]
            for inc in ready:
                self._unsnapped.pop(inc.id, None)
                self._snapped[inc.id] = time.monotonic()
            await self._snapshot(ready)

    async def _tick_digests(self, now_ms: int) -> None:
        """Digests whose membership changed or whose time came (cheap when nothing did)."""
        d = self.digests
        if d is None:
            return
        changes = sum(lc.digest_changes for lc in self.lifecycles.values())
        due = d.next_due()
        if changes == self._digest_seen and (due is None or due > now_ms):
            return
        self._digest_seen = changes
        folded = [inc for lc in self.lifecycles.values() for inc in lc.folded_incidents()]
        for n in d.tick(folded, now_ms, self.exposure_of):
            await self.producer.send(self.topics.alerts, key=n.incident_id.encode(), value=n.to_bytes())
            log.info("digest %s queued: %s, %d experiment(s)", n.id, n.status, n.observed["digest"]["count"])

    async def on_registration_change(self, partition: int, experiment: str, state, now_s: float) -> None:
        lc = self.lifecycle(partition)
        now_ms = int(now_s * 1000)
        lc.record_registration_change(experiment, now_ms)
        registration = self.registration_of(experiment)
        breaches = (rule_breaches(state, registration) if self.engine_config is None
                    else rule_breaches(state, registration, self.engine_config))
        if registration is not None:  # registered now: its `unregistered` incident is over
            breaches.setdefault("unregistered", False)
        notes = lc.on_rule_breaches(experiment, breaches, now_ms, reason="registration changed")
        await self._publish(lc, notes, (experiment,))

    async def on_cleared(self, partition: int, experiment: str, rule: str, now_s: float, kind: str, by: str,
                         **detail) -> None:
        """The cause of an open incident went away (e.g. a flag configuration was fixed): resolve it."""
        lc = self.lifecycle(partition)
        await self._publish(lc, lc.on_cleared(experiment, rule, int(now_s * 1000), kind, by, **detail), (experiment,))

    # ---- operator actions (API) ----------------------------------------------------------
    def find(self, incident_id: str) -> tuple[Lifecycle, object] | None:
        for lc in self.lifecycles.values():
            inc = lc.incident(incident_id)
            if inc is not None:
                return lc, inc
        return None

    # Under the ingest lock: a lifecycle changed between settling notifications and taking its
    # checkpoint could be checkpointed ahead of an unacknowledged notification.
    async def acknowledge(self, incident_id: str, who: str, now_s: float, token: str | None = None):
        async with self.lock:
            hit = self.find(incident_id)
            if hit is None:
                return None
            lc, _ = hit
            inc = lc.acknowledge(incident_id, who, int(now_s * 1000), token)
            await self._snapshot([inc])
            return inc

    async def resolve(self, incident_id: str, who: str, now_s: float, token: str | None = None):
        async with self.lock:
            hit = self.find(incident_id)
            if hit is None:
                return None
            lc, inc = hit
            await self._publish(lc, lc.resolve(incident_id, who, int(now_s * 1000), token), ())
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
        self.lifecycles[partition] = (Lifecycle.from_bytes(blob, self.config, self.policy) if blob
                                      else Lifecycle(self.config, policy=self.policy))
        self._digest_seen = -1
        if blob:
            self._written[partition] = blob

    def rewrite_partition(self, partition: int) -> None:
        """The last lifecycle checkpoint was not acknowledged: hand it out again next time."""
        self._written.pop(partition, None)

    def forget_partition(self, partition: int) -> None:
        self.lifecycles.pop(partition, None)
        self._written.pop(partition, None)
        self._digest_seen = -1

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
        now = time.monotonic()
        by_exp = lc.incidents_by_experiment(experiments)  # one pass, however many experiments
        for incs in by_exp.values():
            for inc in incs:
                if inc.id in touched:
                    continue
                quiet = inc.folded or not is_breach(inc.rule)  # nobody is paged for it (yet)
                if quiet and inc.status == "firing" and self._snapped.get(inc.id, -1e9) > now - SNAPSHOT_EVERY_S:
                    self._unsnapped[inc.id] = inc
                    continue
                touched[inc.id] = inc
        for iid, inc in touched.items():
            self._unsnapped.pop(iid, None)
            if inc.status == "firing":
                self._snapped[iid] = now
            else:
                self._snapped.pop(iid, None)
        await self._snapshot(touched.values())
        if self.metrics is not None:
            for exp, incs in by_exp.items():
                self.metrics.set_open_incidents(exp, sum(1 for i in incs if i.status == "firing"))

    async def _snapshot(self, incidents: Iterable) -> None:
        for inc in incidents:
            body = orjson.dumps({"incident": timeline_dict(inc)})
            await self.producer.send(self.topics.timeline, key=inc.id.encode(), value=body)
