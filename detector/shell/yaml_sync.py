"""GitOps at start: push the YAML registrations of `DETECTOR_EXPECTATIONS_DIR` to the topic.

Only registrations that differ from what the topic already holds are written,
so restarting a worker does not add noise to the change history.
"""

from __future__ import annotations

import logging
import os

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from detector.registration.model import expectation_to_dict, load_dir
from detector.registrations import decode_record, encode_record
from detector.settings import Settings

log = logging.getLogger(__name__)


async def current_registrations(bootstrap: str, topic: str) -> dict[str, dict | None]:
    """Latest record per key of the compacted registrations topic."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    latest: dict[str, dict | None] = {}
    try:
        parts = reader.partitions_for_topic(topic) or set()
        if not parts:
            await reader._client.force_metadata_update()
            parts = reader.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        end = await reader.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > 0}
        while pending:
            got = await reader.getmany(*pending, timeout_ms=500)
            for recs in got.values():
                for r in recs:
                    try:
                        latest[r.key.decode()] = decode_record(r.value)["registration"]
                    except (ValueError, AttributeError):
                        continue
            for tp in list(pending):
                if await reader.position(tp) >= end[tp]:
                    pending.discard(tp)
    finally:
        await reader.stop()
    return latest


async def sync_dir(settings: Settings, directory: str | None = None) -> int:
    """Write changed registrations from YAML; returns how many were written."""
    directory = directory or settings.expectations_dir
    if not directory or not os.path.isdir(directory):
        log.info("no expectations directory at %r; nothing to load", directory)
        return 0
    wanted = load_dir(directory)  # raises RegistrationError naming the file on bad input
    current = await current_registrations(settings.kafka_bootstrap, settings.topics.expectations)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    written = 0
    try:
        for exp, expectation in wanted.items():
            if current.get(exp) == expectation_to_dict(expectation):
                continue
            await producer.send_and_wait(settings.topics.expectations, key=exp.encode(), value=encode_record(expectation, "yaml:" + directory, "yaml"))
            written += 1
    finally:
        await producer.stop()
    log.info("loaded %d registrations from %s (%d changed)", len(wanted), directory, written)
    return written
