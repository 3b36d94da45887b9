"""Batch reader of the exposure sources: the imperative shell around the engine.

One consumer group reads every configured source topic (`DETECTOR_SOURCES`) through the same
`getmany` loop; each record is decoded by its topic's format (detector.sources). Records of
`exposure.assignments` go to the engine. Records of the other source topics are decoded and
their assignments forwarded to `exposure.assignments`, keyed by experiment (a repartition:
platforms key their exports by user or not at all, and one experiment's state must live in one
partition, so that one person seen by two sources is one user and one incident). Forwarded
records are acknowledged before the source offsets that produced them are committed.

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

import msgspec
import time
from collections.abc import Callable, Iterable
from operator import attrgetter

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import OffsetAndMetadata
from mode import Service

from detector.events import Rejected
from detector.ingest import checkpoint, fastfetch
from detector.ingest.acked import AckedSends
from detector.kafka_io import read_to_end
from detector.ingest.partition import PartitionDetector
from detector.settings import Settings
from detector.sources import SKIPPED_KINDS, Source

log = logging.getLogger(__name__)
_value_of = attrgetter("value")
_timestamp_of = attrgetter("timestamp")

CHECKPOINT_COST_FACTOR = 10.0  # checkpoint at most every 10x the last checkpoint's duration
MAX_CHECKPOINT_BYTES = 8 * 1024 * 1024 - 64 * 1024  # the state topic's max.message.bytes (8 MiB), less headroom
MAX_IN_FLIGHT = 2  # periodic checkpoints whose acks and commit run in the background


def _retrieve(task: asyncio.Future) -> None:
    """A background checkpoint's failure is logged where it is awaited; never 'exception never retrieved'."""
    if not task.cancelled():
        task.exception()


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
        registration_of: Callable,  # experiment -> CompiledRegistration | None
        alerts,  # detector.alerts.publisher.AlertPublisher
        metrics=None,
        source_metrics=None,  # detector.sources.metrics.SourceMetrics
        registrations_wait_s: float = 60.0,
        assignor: type | None = None,  # partition assignor (the fleet's advertises this worker's URL)
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.sources: dict[str, Source] = {s.topic: s for s in settings.sources}
        engine = settings.topics.assignments
        if engine not in self.sources:  # forwarded assignments (and the HTTP collector's) land there
            self.sources[engine] = Source(engine, "native")
        elif self.sources[engine].format != "native" and len(self.sources) > 1:
            raise ValueError(f"DETECTOR_SOURCES: {engine} carries {self.sources[engine].format}, so other sources "
                             f"cannot be forwarded to it; give that format its own topic")
        self.decoders = {t: s.decoder(self.context_kind_of) for t, s in self.sources.items()}
        self.source_metrics = source_metrics
        self._encode = msgspec.json.Encoder().encode
        self._partitioner = DefaultPartitioner()
        self._partition_of: dict[bytes, int] = {}  # experiment key -> partition of exposure.assignments
        self._sources_dirty = False  # forwarded records whose source offsets are not committed yet
        self._sources_checkpointed_at = 0.0
        self.assignor = assignor
        self.registrations_wait_s = registrations_wait_s
        self.registrations_ready = False
        self.settings = settings
        self.topics = settings.topics
        self.registration_of = registration_of
        self.alerts = alerts
        self.metrics = metrics
        self.partitions: dict[int, PartitionDetector] = {}
        self.lock = asyncio.Lock()
        alerts.lock = self.lock
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.sends = AckedSends()  # notifications, snapshots, dead letters: settled before each checkpoint
        self.connected = False
        # True from a revocation until the next assignment is restored: the answer of /readyz and
        # of the fleet API is "retry later" meanwhile, never a partial view.
        self.rebalancing = True
        self.last_batch_at = 0.0
        self._checkpointed_at: dict[int, float] = {}  # partition -> time of its last checkpoint
        self._checkpoint_seconds: dict[int, float] = {}  # partition -> its last checkpoint's duration
        self._committed: dict[TopicPartition, int] = {}  # the offsets this process last committed
        # Acks + commits of the periodic checkpoints still in flight (at most MAX_IN_FLIGHT, oldest first).
        self._in_flight: list[asyncio.Future] = []

    def context_kind_of(self, experiment: str) -> str | None:
        """The context kind the experiment's registration names (`identity.context_kind`), or None.

        The decoders ask it per batch, so a registration's change applies to the events decoded after it."""
        registration = self.registration_of(experiment)
        return None if registration is None else registration.context_kind

    # ---- lifecycle -------------------------------------------------------------------------
    async def on_start(self) -> None:
        s = self.settings
        self.producer = AIOKafkaProducer(
            **s.kafka.client_kwargs(),
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            # A checkpoint writes MBs of state (a few KB to 100s of KB an experiment). With aiokafka's
            # default 16 KB batches, every full batch made `send` wait until the sender had drained it,
            # so the ingest loop stalled on the broker for ~15% of its wall time; 512 KB batches stay
            # under every topic's max.message.bytes (1 MB broker default; a larger record gets its own batch).
            max_batch_size=512 * 1024,
            max_request_size=16 * 1024 * 1024,
        )
        await self.producer.start()
        self.sends.producer = self.producer
        self.alerts.producer = self.sends  # notifications must be acked before their state is checkpointed
        raw = fastfetch.install()  # getmany hands out aiokafka's C records (offset, timestamp, key, value)
        self.consumer = AIOKafkaConsumer(
            **s.kafka.client_kwargs(),
            group_id=s.app_id,
            key_deserializer=fastfetch.RAW if raw else None,
            enable_auto_commit=False,
            auto_offset_reset=s.offset_reset,
            # aiokafka fetches a partition again only once its buffer is empty, one request at a
            # time: 16 MB a partition (the default; ~80k records; 64 MB a fetch) keeps a catching-up
            # worker fed through fewer round trips, and fewer loop turns mean fewer checkpoint turns
            # (1M-event runs: 8.8-9.5 -> 7.1-8.7 CPU-us/event, +10-30% events/s against 4 / 32 MB).
            max_partition_fetch_bytes=s.fetch_partition_bytes,
            fetch_max_bytes=4 * s.fetch_partition_bytes,
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
            **({"partition_assignment_strategy": (self.assignor,)} if self.assignor is not None else {}),
        )
        await self.consumer.start()
        self.consumer.subscribe(sorted(self.sources), listener=_Rebalance(self))
        self.connected = True

    async def on_stop(self) -> None:
        if self.consumer is not None:
            try:
                async with self.lock:
                    await self.checkpoint()
            except Exception:  # the broker may be gone; the next start replays from the last commit
                log.exception("final checkpoint failed")
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    @Service.task
    async def _run(self) -> None:
        await self._await_registrations()
        getmany = self.consumer.getmany
        max_records = self.settings.max_batch_records
        interval = self.settings.checkpoint_interval_s
        while not self.should_stop:
            try:
                batch = await getmany(timeout_ms=100, max_records=max_records)
                if batch:  # an empty fetch proves nothing: aiokafka returns {} while the broker is away
                    self.connected = True
            except Exception as exc:
                self.connected = False
                log.warning("fetch failed, retrying: %s", exc)
                await asyncio.sleep(1.0)
                continue
            async with self.lock:
                if self.should_stop:  # on_stop took its final checkpoint while this batch was fetched
                    break
                for tp, records in batch.items():
                    if tp.topic == self.topics.assignments:
                        await self._process(tp.partition, records)
                    else:
                        await self._forward(tp, records)
                    # Between partitions: pages that came due go out now (not after the whole
                    # fetch), and the delivery agent and web server (same event loop) get a turn.
                    await self.alerts.tick(time.time())
                    await asyncio.sleep(0)
                now = time.time()
                await self.alerts.tick(now)
                # Checkpoint each partition every interval, one partition per turn of this loop, so
                # serialising state (every dirty experiment's sketches) blocks detection for an
                # eighth of the time it would take all at once; and every dirty partition at once
                # when caught up (an empty fetch, no record known to be waiting), so that an idle
                # detector has everything it applied checkpointed and committed. An empty fetch
                # while the broker holds more (the loop drained the buffers before the next fetch
                # came back) is not idleness: a full checkpoint there, waiting for its acks,
                # stalled a catching-up worker ~8% of its time. A partition's interval stretches
                # to 10x its last checkpoint's duration (serialising, writing, the broker's acks),
                # so that checkpoints never take more than ~10% of the time, of this process or of
                # the broker.
                due = self._most_overdue(now, interval)
                busy = bool(batch) or await self._behind()
                if busy:
                    parts, wait = ([due] if due is not None else []), False
                else:
                    parts, wait = [p for p, det in self.partitions.items() if det.dirty or p == due], True
                # Source topics' offsets are committed with the checkpoints, at most every interval.
                src_due = self._sources_dirty and (not busy or now - self._sources_checkpointed_at >= interval)
                if parts or src_due:
                    try:
                        await self.checkpoint(partitions=parts, wait=wait)
                    except Exception as exc:  # broker away: applied state stays dirty, retried next time
                        log.warning("checkpoint failed, retrying with the next one: %s", exc)
            # getmany returns buffered records without suspending, so under load this loop would
            # never yield: Faust's consumer (the alert outbox's delivery agent) and the web server
            # share this event loop and would wait seconds for a turn.
            await asyncio.sleep(0)

    @Service.task
    async def _watch_broker(self) -> None:
        """Readiness: ask the cluster for metadata every 2 s; `connected` is False while no broker answers."""
        while not self.should_stop:
            await self.sleep(2.0)
            if self.consumer is None:
                continue
            try:
                # Metadata of the subscribed topics only: a full fetch_all_metadata() decodes every
                # topic of the cluster in Python (~8% of the worker's CPU on a broker with ~300 topics).
                ok = bool(await asyncio.wait_for(self.consumer._client.force_metadata_update(), 5.0))
            except Exception:
                ok = False
            if ok != self.connected:
                (log.info if ok else log.warning)("Kafka at %s is %s", self.settings.kafka_bootstrap,
                                                  "reachable again" if ok else "unreachable")
            self.connected = ok

    async def _behind(self) -> bool:
        """True when some owned partition has records beyond this consumer's position (as of the last fetch)."""
        return any(n > 0 for n in (await self.lags()).values())

    def _most_overdue(self, now: float, interval: float) -> int | None:
        """The owned partition whose checkpoint is most overdue, if any is due."""
        best, best_late = None, 0.0
        for p in self.partitions:
            every = max(interval, CHECKPOINT_COST_FACTOR * self._checkpoint_seconds.get(p, 0.0))
            late = now - self._checkpointed_at.setdefault(p, now) - every
            if late >= 0 and (best is None or late > best_late):
                best, best_late = p, late
        return best

    async def _await_registrations(self) -> None:
        """Hold the first fetch until the registrations table holds every registered experiment.

        Faust folds `exposure.expectations` into the registrations table asynchronously; a batch
        judged before then would page `unregistered` for registered experiments (and a fresh
        deployment would record every early user as an offender). The service reads the topic
        itself to learn which keys to wait for; after `registrations_wait_s` it goes on anyway.
        """
        try:
            keys = await self._registered_keys()
        except Exception:
            log.exception("could not read %s; not waiting for registrations", self.topics.expectations)
            keys = set()
        deadline = time.monotonic() + self.registrations_wait_s
        t0 = time.monotonic()
        while keys:
            keys = {k for k in keys if self.registration_of(k) is None}
            if not keys or self.should_stop:
                break
            if time.monotonic() > deadline:
                log.warning("%d registrations still not loaded after %.0f s (e.g. %s); consuming anyway",
                            len(keys), self.registrations_wait_s, sorted(keys)[:5])
                break
            await asyncio.sleep(0.05)
        self.registrations_ready = True
        log.info("registrations loaded in %.2f s; consuming %s", time.monotonic() - t0,
                 ", ".join(f"{t} ({s.format})" for t, s in sorted(self.sources.items())))

    async def _registered_keys(self) -> set[str]:
        from detector.registration.store import read_registrations

        return set(await read_registrations(self.settings.kafka, self.topics.expectations))

    # ---- the batch path ----------------------------------------------------------------------
    async def _process(self, partition: int, records) -> None:
        det = self.partitions.get(partition)
        if det is None:  # assignment callback not run yet (should not happen): start empty
            det = self.partitions[partition] = PartitionDetector(partition, self.settings.engine_config)
        t0 = time.perf_counter()
        values = list(map(_value_of, records))
        stamps = list(map(_timestamp_of, records))
        topic = self.topics.assignments
        events, positions, rejects = self.decoders[topic].decode_batch(values, stamps)
        first, last = records[0].offset, records[-1].offset
        if first <= det.skip_upto:  # replay after a restore: the engine needs each event's offset
            offsets = [r.offset for r in records]
            if positions is not None:
                offsets = [offsets[i] for i in positions]
        else:
            offsets = None
        findings = []
        for found in det.steps(events, offsets, self.registration_of, last_offset=last):
            findings += found
            await asyncio.sleep(0)  # a turn of the event loop: it reads the next fetch meanwhile
        if findings:
            await self.alerts.on_findings(partition, findings, time.time())
        await self._reject(topic, partition, records, rejects, len(events))
        self.last_batch_at = time.time()
        m = self.metrics
        if m is not None:
            m.record_consumed(len(records))
            m.record_decoded(len(events))
            m.record_batch(len(records), time.perf_counter() - t0, last_event_ms=records[-1].timestamp)

    async def _forward(self, tp: TopicPartition, records) -> None:
        """Decode a batch of another source topic; send its assignments to exposure.assignments.

        Keyed by experiment, so the engine sees every source's events of one experiment in one
        partition. The sends are settled (acknowledged) before the next commit of this topic's
        offsets, so a crash re-forwards, never loses (a repeated exposure changes no user count).
        """
        values = list(map(_value_of, records))
        stamps = list(map(_timestamp_of, records))
        events, positions, rejects = self.decoders[tp.topic].decode_batch(values, stamps)
        target, encode = self.topics.assignments, self._encode
        parts = sorted(await self.producer.partitions_for(target))
        cache = self._partition_of
        if len(cache) > 100_000 or cache.get(b"") != len(parts):  # bounded; reset if partitions were added
            cache.clear()
            cache[b""] = len(parts)
        by_partition: dict[int, list] = {}
        for j, ev in enumerate(events):
            key = ev.experiment.encode()
            p = cache.get(key)
            if p is None:  # Kafka's default partitioner (murmur2 of the key), as producers of this topic use
                p = cache[key] = self._partitioner(key, parts, parts)
            stamp = stamps[j if positions is None else positions[j]]
            by_partition.setdefault(p, []).append((key, encode(ev), stamp or None))
        for p, batch in by_partition.items():
            await self.sends.send_many(target, p, batch)
        await self._reject(tp.topic, tp.partition, records, rejects, len(events))
        self._sources_dirty = True
        self.last_batch_at = time.time()

    async def _reject(self, topic: str, partition: int, records, rejects, decoded: int) -> None:
        """Count a decoded batch per source; dead-letter its rejects (not the skipped kinds)."""
        for i, rej in rejects:
            if rej.kind not in SKIPPED_KINDS:
                await self._dead_letter(topic, partition, records[i], rej)
                if self.metrics is not None:
                    self.metrics.record_dead_letter(rej.kind)
        if self.source_metrics is not None:
            self.source_metrics.record(topic, self.sources[topic].format, len(records), decoded, rejects)

    async def _dead_letter(self, topic: str, partition: int, record, rejected: Rejected) -> None:
        log.warning(
            "dead-lettered %s partition %d offset %d: %s", topic, partition, record.offset, rejected.reason[:200]
        )
        headers = [
            ("reason", rejected.reason[:1000].encode()),
            ("kind", rejected.kind.encode()),
            ("source", f"{topic}/{partition}/{record.offset}".encode()),
        ]
        # A tombstone stays a tombstone (None): the dead letter keeps the original value exactly.
        await self.sends.send(self.topics.deadletter, value=record.value, key=record.key, headers=headers)

    # ---- checkpoints, commits, rebalances -----------------------------------------------------
    async def checkpoint(self, partitions: Iterable[int] | None = None, wait: bool = True) -> None:
        """Persist dirty state for `partitions` (default: all owned), then commit their offsets.

        With wait=False (the periodic checkpoint of the ingest loop) only the writing happens
        inline; waiting for the broker's acks and committing runs in the background, so batches
        keep flowing during the round trips. Up to MAX_IN_FLIGHT checkpoints are in flight: this
        one's records go out while the previous one's acks are awaited (waiting for them here
        stalled the ingest loop ~6% of its time), but each commits only after the one before it
        has committed and its own records are acknowledged, so commits stay in order and always
        follow their state's acks; if the one before failed, this one commits nothing either (its
        experiments are written again with the next checkpoint, like the failed one's).
        """
        limit = 1 if wait else MAX_IN_FLIGHT
        while self._in_flight and (len(self._in_flight) >= limit or self._in_flight[0].done()):
            # (logs a failure: the failed one's experiments are dirty again, so this one writes them)
            await self._settle_checkpoint()
        # The one still in flight (if any) was not done before this one took its dirty state: commit after it.
        before = self._in_flight[-1] if self._in_flight else None
        t0 = time.perf_counter()
        owned = list(self.partitions if partitions is None else partitions)
        await self.sends.settle()  # notifications and dead letters first: never checkpoint past them
        topic = self.topics.state
        futs = []
        positions = {}
        written = []
        for p in owned:
            if p in self.partitions:
                written.append((p, self.partitions[p].take_dirty_checkpoints()))
                # Serialising a partition's state takes tens of ms under load: let the delivery
                # agent and the web server (same event loop) run in between. Batches wait (lock).
                await asyncio.sleep(0)
        try:
            for p, records in written:
                for key, value in records:
                    if len(value) > MAX_CHECKPOINT_BYTES:
                        # The state topic takes at most 8 MiB a record (the engine bounds offender
                        # ids, so this should not happen). Crashing would stop detection for every
                        # experiment; skipping keeps it running, but a restore of this experiment
                        # would miss the events since its last checkpoint: say so loudly.
                        log.error("state of %r is %d bytes, over the %d-byte checkpoint limit: not checkpointed",
                                  key.decode(errors="replace"), len(value), MAX_CHECKPOINT_BYTES)
                        continue
                    futs.append(await self.producer.send(topic, key=key, value=value, partition=p))
                lc = self.alerts.checkpoint_blob(p)
                if lc is not None:
                    futs.append(await self.producer.send(
                        topic, key=checkpoint.LIFECYCLE_KEY, value=checkpoint.encode(-1, lc), partition=p))
                tp = TopicPartition(self.topics.assignments, p)
                try:
                    pos = await self.consumer.position(tp)
                except Exception:  # not assigned any more
                    continue
                if self._committed.get(tp) != pos:  # an idle partition needs no new commit
                    positions[tp] = OffsetAndMetadata(pos, "")
            # Other source topics: everything forwarded from them was settled above.
            for tp in self._source_partitions():
                try:
                    pos = await self.consumer.position(tp)
                except Exception:
                    continue
                if self._committed.get(tp) != pos:
                    positions[tp] = OffsetAndMetadata(pos, "")
            self._sources_dirty = False
            self._sources_checkpointed_at = time.time()
        except Exception:
            self._redirty(written)
            raise
        now = time.time()
        for p, _ in written:
            self._checkpointed_at[p] = now
        finish = self._finish_checkpoint(futs, positions, written, t0, before)
        if wait:
            await finish
        else:
            task = asyncio.ensure_future(finish)
            task.add_done_callback(_retrieve)
            self._in_flight.append(task)

    async def _finish_checkpoint(self, futs, positions, written, t0: float, before: asyncio.Future | None) -> None:
        try:
            if futs:
                await asyncio.gather(*futs)
            took = time.perf_counter() - t0
            if before is not None:  # commits in order; after a failed one, commit nothing
                await asyncio.shield(before)
        except BaseException:  # also cancelled: nothing acked may be assumed
            # Not acked: commit nothing now (the offsets would claim state the changelog may not hold).
            self._redirty(written)
            raise
        for p, _ in written:
            self._checkpoint_seconds[p] = took
        if positions:
            await self.consumer.commit(positions)
            self._committed.update({tp: om.offset for tp, om in positions.items()})

    def _redirty(self, written) -> None:
        """Write these experiments (and the partitions' lifecycles) again with the next checkpoint."""
        self._sources_dirty = True  # the source offsets were not committed either
        for p, records in written:
            self.alerts.rewrite_partition(p)
            det = self.partitions.get(p)
            if det is not None:
                det.mark_dirty(k.decode() for k, _ in records)

    async def _settle_checkpoint(self) -> None:
        """Wait for the oldest checkpoint in flight, if any (its failure is logged; the next one retries)."""
        if not self._in_flight:
            return
        task = self._in_flight.pop(0)
        try:
            await asyncio.shield(task)
        except Exception as exc:
            log.warning("checkpoint failed (state is written again with the next one): %s", exc)

    def _source_partitions(self) -> list[TopicPartition]:
        """Owned partitions of the source topics other than exposure.assignments."""
        if self.consumer is None:
            return []
        return [tp for tp in self.consumer.assignment() if tp.topic != self.topics.assignments]

    async def on_revoked(self, revoked) -> None:
        parts = [tp.partition for tp in revoked if tp.topic == self.topics.assignments]
        self.rebalancing = True
        async with self.lock:
            if parts or self._sources_dirty:
                try:
                    await self.checkpoint(partitions=parts)
                except Exception:
                    log.exception("checkpoint on revoke failed; the new owner replays from the last commit")
            for p in parts:
                det = self.partitions.pop(p, None)
                self.alerts.forget_partition(p)
                if det is not None and self.metrics is not None:
                    # Per-experiment series come from the owner only: `sum by (experiment)` across
                    # the fleet counts each experiment once.
                    for experiment in det.states:
                        self.metrics.remove_experiment(experiment)

    async def on_assigned(self, assigned) -> None:
        parts = sorted(tp.partition for tp in assigned if tp.topic == self.topics.assignments)
        if not parts:
            self.rebalancing = False
            log.info("no partitions assigned (more workers than partitions?): not ready")
            return
        async with self.lock:
            t0 = time.perf_counter()
            restored = await self._restore(parts)
            self.rebalancing = False
            log.info(
                "assigned partitions %s; restored %d records in %.2f s", parts, restored, time.perf_counter() - t0
            )

    async def _restore(self, parts: list[int]) -> int:
        topic = self.topics.state
        dets = {p: PartitionDetector(p, self.settings.engine_config) for p in parts}
        lifecycle_blobs: dict[int, bytes] = {}
        n = 0
        async for r in read_to_end(self.settings.kafka, topic, parts):
            n += 1
            try:
                if r.key == checkpoint.LIFECYCLE_KEY:
                    if r.value is not None:
                        lifecycle_blobs[r.partition] = checkpoint.decode(r.value).blob
                else:
                    dets[r.partition].restore(r.key, r.value)
            except Exception as exc:  # e.g. an older format: rebuild that key from events
                log.error("unreadable checkpoint %r in partition %d skipped: %s", r.key, r.partition, exc)
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

    async def lags(self) -> dict[tuple[str, int], int]:
        """Records behind the end of each owned partition (high watermark of the last fetch - position)."""
        out: dict[tuple[str, int], int] = {}
        if self.consumer is None:
            return out
        for tp in list(self.consumer.assignment()):
            try:
                high = self.consumer.highwater(tp)
                if high is not None:
                    out[(tp.topic, tp.partition)] = max(0, high - await self.consumer.position(tp))
            except Exception:  # revoked meanwhile
                continue
        return out

    def take_changed(self) -> set[str]:
        """Experiments whose state (or registration) changed since the last call: for the metrics."""
        out: set[str] = set()
        for det in self.partitions.values():
            out |= det.observed
            det.observed.clear()
        return out

    async def reevaluate(self, experiment: str) -> None:
        """A registration changed: re-judge the experiment's rules under the new declaration."""
        async with self.lock:
            for p, det in self.partitions.items():
                if experiment in det.states:
                    det.observed.add(experiment)
                    await self.alerts.on_registration_change(p, experiment, det.states[experiment], time.time())


