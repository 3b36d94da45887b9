"""GitOps at start: push the YAML registrations of `DETECTOR_EXPECTATIONS_DIR` to the topic.

Only registrations that differ from what the topic already holds are written,
so restarting a worker does not add noise to the change history.
"""

from __future__ import annotations

import logging
import os

from aiokafka import AIOKafkaProducer

from detector.kafka_io import latest_values

from detector.alerts.outbound import KillUrlPolicy
from detector.registration.model import FieldError, RegistrationError, expectation_to_dict, load_dir
from detector.registrations import decode_record, encode_record
from detector.settings import Settings

log = logging.getLogger(__name__)


async def current_registrations(bootstrap: str, topic: str) -> dict[str, dict | None]:
    """Latest registration per experiment in the compacted registrations topic."""
    latest: dict[str, dict | None] = {}
    for key, value in (await latest_values(bootstrap, topic)).items():
        try:
            latest[key.decode()] = decode_record(value)["registration"]
        except (ValueError, TypeError, UnicodeDecodeError):
            continue
    return latest


async def sync_dir(settings: Settings, directory: str | None = None) -> int:
    """Write changed registrations from YAML; returns how many were written."""
    directory = directory or settings.expectations_dir
    if not directory or not os.path.isdir(directory):
        log.info("no expectations directory at %r; nothing to load", directory)
        return 0
    wanted = load_dir(directory)  # raises RegistrationError naming the file on bad input
    policy = KillUrlPolicy.from_settings(settings)
    refused = [FieldError("mitigation.kill_url", problem, f"{directory}: {exp}")
               for exp, e in sorted(wanted.items()) if e.kill_url and (problem := policy.url_problem(e.kill_url))]
    if refused:
        raise RegistrationError(refused)
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
