"""Reading a topic from its beginning to its current end: restores and compacted-topic snapshots."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from detector.kafka_security import KafkaConnection, client_kwargs


async def partitions_of(bootstrap: KafkaConnection | str, topic: str) -> set[int]:
    """The topic's partition numbers (empty if it does not exist)."""
    admin = AIOKafkaAdminClient(**client_kwargs(bootstrap))
    await admin.start()
    try:
        for t in await admin.describe_topics([topic]):
            if t.get("topic") == topic and not t.get("error_code"):
                return {p["partition"] for p in t.get("partitions", [])}
    finally:
        await admin.close()
    return set()


async def read_to_end(bootstrap: KafkaConnection | str, topic: str, partitions: Iterable[int] | None = None) -> AsyncIterator:
    """Every record of `partitions` (default: all) up to the end offsets seen at the start, in order
    per partition. No consumer group: nothing is committed."""
    parts = sorted(await partitions_of(bootstrap, topic) if partitions is None else partitions)
    if not parts:
        return
    reader = AIOKafkaConsumer(**client_kwargs(bootstrap), enable_auto_commit=False)
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in parts]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        end = await reader.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > 0}
        while pending:
            got = await reader.getmany(*pending, timeout_ms=500)
            for recs in got.values():
                for r in recs:
                    yield r
            for tp in list(pending):
                if await reader.position(tp) >= end[tp]:
                    pending.discard(tp)
    finally:
        await reader.stop()


async def latest_values(bootstrap: KafkaConnection | str, topic: str) -> dict[bytes, bytes | None]:
    """The last value per key of a (compacted) topic."""
    latest: dict[bytes, bytes | None] = {}
    async for r in read_to_end(bootstrap, topic):
        if r.key is not None:
            latest[r.key] = r.value
    return latest
