"""Create the detector's topics with explicit partition counts.

Faust fails with PartitionsMismatch on auto-created topics, and the broker we
ship disables auto-creation, so the worker creates everything it uses up front.
"""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from detector.settings import Settings

log = logging.getLogger(__name__)

COMPACT = {"cleanup.policy": "compact"}
FAUST_TABLES = ("registrations", "registration-history", "incidents", "deliveries")


def topic_specs(settings: Settings) -> list[NewTopic]:
    p, t = settings.partitions, settings.topics
    return [
        NewTopic(t.assignments, p, 1),
        # Registrations and engine state: latest value per key is what matters.
        NewTopic(t.expectations, p, 1, topic_configs=COMPACT),
        NewTopic(t.state, p, 1, topic_configs={**COMPACT, "max.message.bytes": "8388608"}),
        NewTopic(t.alerts, p, 1),
        NewTopic(t.timeline, p, 1),
        NewTopic(t.deadletter, 1, 1, topic_configs={"max.message.bytes": "2097152"}),
        # Faust's table changelogs, created up front: letting Faust create them while the
        # group is assigning partitions leaves the assignment waiting for them.
        *(NewTopic(f"{settings.faust_id}-{t}-changelog", p, 1, topic_configs=COMPACT) for t in FAUST_TABLES),
        # Source topics of other formats (DETECTOR_SOURCES), if the platform's exporter has not made them.
        *(NewTopic(s.topic, p, 1) for s in settings.sources if s.topic != t.assignments),
    ]


async def ensure_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(**settings.kafka.client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topic_specs(settings) if t.name not in existing]
        for spec in missing:
            try:
                await admin.create_topics([spec])
                log.info("created topic %s with %d partitions", spec.name, spec.num_partitions)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
