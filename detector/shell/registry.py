"""`RegistrationService` over Kafka: writes go to the compacted `exposure.expectations`
topic; reads come from the Faust tables that the registrations agent folds it into."""

from __future__ import annotations

import logging
from typing import Any

from detector.expectations import Expectation
from detector.registration.model import format_timestamp, parse_expectation
from detector.registration.risk import diff
from detector.registrations import ParsedRegistrations, encode_record

log = logging.getLogger(__name__)


class KafkaRegistrationService:
    def __init__(self, topic, table, history_table, observe, metrics=None, source: str = "api") -> None:
        self.topic = topic  # faust topic exposure.expectations (raw bytes)
        self.parsed = ParsedRegistrations(table)
        self.history_table = history_table
        self.observe = observe  # experiment -> observation dict | None
        self.metrics = metrics
        self.source = source

    def all(self) -> dict[str, Expectation]:
        return self.parsed.all()

    def get(self, experiment: str) -> Expectation | None:
        return self.parsed.get(experiment)

    async def put(self, expectation: Expectation, who: str) -> None:
        await self.topic.send(key=expectation.experiment.encode(), value=encode_record(expectation, who, self.source))
        if self.metrics is not None:
            self.metrics.record_registration(self.source, "written")

    async def delete(self, experiment: str, who: str) -> None:
        await self.topic.send(key=experiment.encode(), value=encode_record(None, who, self.source))
        if self.metrics is not None:
            self.metrics.record_registration(self.source, "deleted")

    def history(self, experiment: str) -> list[dict[str, Any]]:
        return list(self.history_table.get(experiment) or [])

    def observation(self, experiment: str) -> dict[str, Any] | None:
        return self.observe(experiment)


def history_entry(old_raw: dict | None, record: dict) -> dict[str, Any]:
    """One change-history entry (who, when, diff) from the previous and the new record."""
    old = parse_expectation(old_raw) if old_raw else None
    new_raw = record.get("registration")
    new = parse_expectation(new_raw) if new_raw else None
    action = "delete" if new is None else ("create" if old is None else "update")
    return {
        "at": format_timestamp(int(record.get("at", 0))),
        "who": record.get("who", "unknown"),
        "source": record.get("source", "unknown"),
        "action": action,
        "diff": diff(old, new),
    }
