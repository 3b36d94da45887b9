"""Every worker's complete, live copy of Faust tables, read from their changelog topics.

Faust's `GlobalTable` promises every key on every worker, but with several workers in the group
a worker only sees the writes its own agents made after recovery (measured with three workers:
each held only the registrations of the exposure.expectations partitions it consumed). The detector needs
the whole registrations table on the worker that owns an experiment's assignments (else it pages
`unregistered` for a registered experiment), and the incident table wherever an API call lands.

So the agents keep writing the Faust tables (their changelogs are the record), and this service
reads those changelog topics itself: no consumer group, every partition assigned, from the
beginning, then following new records. Reads (`get`, `items`, ...) come from its dicts;
`on_change(table, key)` runs for each applied record, once caught up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from detector.kafka_io import partitions_of

log = logging.getLogger(__name__)


class MirroredTable:
    """Read-only mapping view of one mirrored table (str keys, JSON values)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.data))

    def __len__(self) -> int:
        return len(self.data)

    def keys(self):
        return list(self.data.keys())

    def items(self):
        return list(self.data.items())

    def values(self):
        return list(self.data.values())


class ChangelogMirror(Service):
    def __init__(self, settings, tables: dict[str, str], *,
                 on_change: Callable[[str, str], Awaitable[None]] | None = None, **kwargs) -> None:
        """`tables`: table name -> changelog topic."""
        super().__init__(**kwargs)
        self.settings = settings
        self.topics = dict(tables)
        self.tables = {name: MirroredTable() for name in tables}
        self._by_topic = {topic: self.tables[name] for name, topic in tables.items()}
        self._name_of = {topic: name for name, topic in tables.items()}
        self.on_change = on_change
        self.caught_up = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None

    def table(self, name: str) -> MirroredTable:
        return self.tables[name]

    async def on_start(self) -> None:
        self.consumer = AIOKafkaConsumer(**self.settings.kafka.client_kwargs(), enable_auto_commit=False,
                                         auto_offset_reset="earliest")
        await self.consumer.start()
        tps = []
        for topic in self.topics.values():
            tps += [TopicPartition(topic, p) for p in sorted(await partitions_of(self.settings.kafka, topic))]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self._end = {tp: off for tp, off in (await self.consumer.end_offsets(tps)).items() if off > 0}

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    @Service.task
    async def _follow(self) -> None:
        consumer = self.consumer
        if not self._end:
            self.caught_up.set()
        while not self.should_stop:
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            except Exception as exc:  # broker away: keep the last view, retry
                log.warning("changelog mirror fetch failed, retrying: %s", exc)
                await asyncio.sleep(1.0)
                continue
            changed: list[tuple[str, str]] = []
            for tp, records in batch.items():
                table = self._by_topic[tp.topic]
                for r in records:
                    try:
                        key = orjson.loads(r.key) if r.key is not None else None
                        if not isinstance(key, str):
                            continue
                        if r.value is None:
                            table.data.pop(key, None)
                        else:
                            table.data[key] = orjson.loads(r.value)
                    except orjson.JSONDecodeError:
                        log.error("unreadable record in %s partition %d offset %d skipped", tp.topic, tp.partition,
                                  r.offset)
                        continue
                    changed.append((self._name_of[tp.topic], key))
            if not self.caught_up.is_set():
                for tp in list(self._end):
                    if await consumer.position(tp) >= self._end[tp]:
                        del self._end[tp]
                if self._end:
                    continue
                self.caught_up.set()
                log.info("changelog mirror caught up: %s",
                         ", ".join(f"{n}={len(t)}" for n, t in self.tables.items()))
            if self.on_change is not None:
                for name, key in changed:
                    try:
                        await self.on_change(name, key)
                    except Exception:
                        log.exception("handling a change of %s[%r] failed", name, key)
