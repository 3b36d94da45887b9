"""Batch reader of `exposure.assignments`: the imperative shell around the engine.

Faust's per-event stream costs ~100 us an event; this service reads the topic
with aiokafka `getmany` in the `DETECTOR_APP_ID` consumer group and hands whole
batches to the engine. Its state is checkpointed with the input offsets into a
compacted topic and restored when partitions are assigned, so a restart or a
rebalance continues exactly where the last checkpoint left off.

Order of writes (what makes restarts safe):
  notifications -> exposure.alerts (acked)  ->  state checkpoint (acked)  ->  offset commit
A crash anywhere re-derives the same notifications (same ids) from the same
events, and delivery drops ids it has already sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from mode import Service

from detector.engine import Finding
from detector.events import Rejected, decode
from detector.ingest import checkpoint
from detector.ingest.partition import PartitionDetector
from detector.settings import Settings

log = logging.getLogger(__name__)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: "IngestService") -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked):
        await self.service.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned):
        await self.service.on_assigned(assigned)


class IngestService(Service):
    """Reads assignments in batches, runs detection, checkpoints state, commits offsets."""

    def __init__(
        self,
        settings: Settings,
        *,
        expectation_of: Callable,  # experiment -> Expectation | None
        alerts,  # detector.alerts.publisher.AlertPublisher
        metrics=None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.topics = settings.topics
        self.expectation_of = expectation_of
        self.alerts = alerts
        self.metrics = metrics
        self.partitions: dict[int, PartitionDetector] = {}
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.connected = False
        self.last_batch_at = 0.0
        self._last_checkpoint = 0.0

    # ---- lifecycle -------------------------------------------------------------------------
    async def on_start(self) -> None:
        s = self.settings
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_request_size=16 * 1024 * 1024,
        )
        await self.producer.start()
        self.alerts.producer = self.producer
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.app_id,
            enable_auto_commit=False,
            auto_offset_reset=s.offset_reset,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            session_timeout_ms=30000,
            heartbeat_interval_ms=3000,
        )
        await self.consumer.start()
        self.consumer.subscribe([self.topics.assignments], listener=_Rebalance(self))
        self.connected = True

    async def on_stop(self) -> None:
        if self.consumer is not None:
            try:
                async with self.lock:
                    await self.checkpoint(commit=True)
            except Exception:  # the broker may be gone; the next start replays from the last commit
                log.exception("final checkpoint failed")
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    @Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            try:
                batch = await self.consumer.getmany(timeout_ms=100, max_records=self.settings.max_batch_records)
                self.connected = True
            except Exception as exc:
                self.connected = False
                log.warning("fetch failed, retrying: %s", exc)
                await asyncio.sleep(1.0)
                continue
            async with self.lock:
                for tp, records in batch.items():
                    await self._process(tp.partition, records)
                now = time.time()
                await self.alerts.tick(now)
                if now - self._last_checkpoint >= self.settings.checkpoint_interval_s:
                    await self.checkpoint(commit=True)

    # ---- the batch path ----------------------------------------------------------------------
    async def _process(self, partition: int, records) -> None:
        det = self.partitions.get(partition)
        if det is None:  # assignment callback not run yet (should not happen): start empty
            det = self.partitions[partition] = PartitionDetector(partition)
        t0 = time.perf_counter()
        events, offsets, rejects = [], [], []
        for r in records:
            ev = decode(r.value, r.timestamp)
            if isinstance(ev, Rejected):
                rejects.append((r, ev))
            else:
                events.append(ev)
                offsets.append(r.offset)
        findings = det.apply(events, offsets, self.expectation_of)
        if findings:
            await self.alerts.on_findings(partition, findings, time.time())
        for r, rej in rejects:
            await self._dead_letter(r, rej)
        self.last_batch_at = time.time()
        m = self.metrics
        if m is not None:
            m.record_consumed(len(records))
            m.record_decoded(len(events))
            for _, rej in rejects:
                m.record_dead_letter(rej.kind)
            m.record_batch(len(records), time.perf_counter() - t0, last_event_ms=records[-1].timestamp)

    async def _dead_letter(self, record, rejected: Rejected) -> None:
        log.warning(
            "dead-lettered partition %d offset %d: %s", record.partition, record.offset, rejected.reason[:200]
        )
        headers = [
            ("reason", rejected.reason[:1000].encode()),
            ("kind", rejected.kind.encode()),
            ("source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        await self.producer.send(self.topics.deadletter, value=record.value or b"", key=record.key, headers=headers)

    # ---- checkpoints, commits, rebalances -----------------------------------------------------
    async def checkpoint(self, commit: bool, partitions: Iterable[int] | None = None) -> None:
        """Persist dirty state for `partitions` (default: all owned), then commit their offsets."""
        owned = list(self.partitions if partitions is None else partitions)
        await self.producer.flush()  # notifications and dead letters first: never checkpoint past them
        topic = self.topics.state
        futs = []
        positions = {}
        for p in owned:
            det = self.partitions.get(p)
            if det is None:
                continue
            for key, value in det.take_dirty_checkpoints():
                futs.append(await self.producer.send(topic, key=key, value=value, partition=p))
            lc = self.alerts.checkpoint_blob(p)
            if lc is not None:
                futs.append(
                    await self.producer.send(
                        topic, key=checkpoint.LIFECYCLE_KEY, value=checkpoint.encode(-1, lc), partition=p
                    )
                )
            tp = TopicPartition(self.topics.assignments, p)
            try:
                positions[tp] = OffsetAndMetadata(await self.consumer.position(tp), "")
            except Exception:  # not assigned any more
                pass
        if futs:
            await asyncio.gather(*futs)
        if commit and positions:
            await self.consumer.commit(positions)
        self._last_checkpoint = time.time()

    async def on_revoked(self, revoked) -> None:
        parts = [tp.partition for tp in revoked]
        async with self.lock:
            if parts:
                try:
                    await self.checkpoint(commit=True, partitions=parts)
                except Exception:
                    log.exception("checkpoint on revoke failed; the new owner replays from the last commit")
            for p in parts:
                self.partitions.pop(p, None)
                self.alerts.forget_partition(p)

    async def on_assigned(self, assigned) -> None:
        parts = sorted(tp.partition for tp in assigned)
        if not parts:
            return
        async with self.lock:
            t0 = time.perf_counter()
            restored = await self._restore(parts)
            log.info(
                "assigned partitions %s; restored %d records in %.2f s", parts, restored, time.perf_counter() - t0
            )

    async def _restore(self, parts: list[int]) -> int:
        topic = self.topics.state
        dets = {p: PartitionDetector(p) for p in parts}
        lifecycle_blobs: dict[int, bytes] = {}
        reader = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False)
        await reader.start()
        n = 0
        try:
            tps = [TopicPartition(topic, p) for p in parts]
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            end = await reader.end_offsets(tps)
            pending = {tp for tp in tps if end[tp] > 0}
            while pending:
                got = await reader.getmany(*pending, timeout_ms=500)
                for tp, recs in got.items():
                    for r in recs:
                        n += 1
                        try:
                            if r.key == checkpoint.LIFECYCLE_KEY:
                                if r.value is not None:
                                    lifecycle_blobs[tp.partition] = checkpoint.decode(r.value).blob
                            else:
                                dets[tp.partition].restore(r.key, r.value)
                        except Exception as exc:  # e.g. an older format: rebuild that key from events
                            log.error("unreadable checkpoint %r in partition %d skipped: %s", r.key, tp.partition, exc)
                for tp in list(pending):
                    if await reader.position(tp) >= end[tp]:
                        pending.discard(tp)
        finally:
            await reader.stop()
        self.partitions.update(dets)
        for p in parts:
            self.alerts.restore_partition(p, lifecycle_blobs.get(p))
        return n

    # ---- views -------------------------------------------------------------------------------
    def state_of(self, experiment: str):
        for det in self.partitions.values():
            st = det.states.get(experiment)
            if st is not None:
                return st
        return None

    def experiments(self) -> Iterable[str]:
        for det in self.partitions.values():
            yield from det.states

    async def reevaluate(self, experiment: str) -> None:
        """A registration changed: re-judge the experiment's rules under the new declaration."""
        async with self.lock:
            for p, det in self.partitions.items():
                if experiment in det.states:
                    await self.alerts.on_registration_change(p, experiment, det.states[experiment], time.time())


