"""Registrations backed by Kafka: the table fold, the one parsed cache, and the services.

    exposure.expectations ──(RegistrationFold, in the worker's Faust agent)──► table of canonical
                                                                               documents + history
    ParsedRegistrations: `CompiledRegistration`s over that table, re-compiled only when a value changes
    KafkaRegistrationService: the API's `RegistrationService` (writes records, reads the cache)
    TopicRegistrations: the same over the topic read directly, before the Faust app runs (start-up sync)

The tables are Faust GlobalTables (every worker sees every registration); any `MutableMapping`
works, which is how the unit tests run the fold without Kafka.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from detector.registration.compiled import CompiledRegistration
from detector.kafka_io import latest_values
from detector.kafka_security import KafkaConnection, client_kwargs
from detector.registration.model import parse_registration
from detector.registration.records import RegistrationRecord, decode_record, encode_record
from detector.registration.risk import diff
from detector.timestamps import format_timestamp

log = logging.getLogger(__name__)


class TableView(Protocol):
    """What the registration services read from a table: a Faust table, its changelog mirror, a dict."""

    def get(self, key: str, /) -> Any: ...

    def keys(self) -> Iterable[str]: ...


HISTORY_LIMIT = 100  # changes kept per experiment


class ParsedRegistrations:
    """`CompiledRegistration`s over a table of canonical registration documents; a document is
    compiled only when its value changes (or `remember` was told the result)."""

    def __init__(self, table: TableView) -> None:
        self.table = table
        self._cache: dict[str, tuple[dict, CompiledRegistration]] = {}

    def remember(self, experiment: str, document: dict, registration: CompiledRegistration) -> None:
        """The fold already validated `document`: keep its compiled form."""
        self._cache[experiment] = (document, registration)

    def get(self, experiment: str) -> CompiledRegistration | None:
        raw = self.table.get(experiment)
        if raw is None:
            return None
        hit = self._cache.get(experiment)
        if hit is not None and hit[0] is raw:
            return hit[1]
        registration = parse_registration(raw)
        self._cache[experiment] = (raw, registration)
        return registration

    def all(self) -> dict[str, CompiledRegistration]:
        return {k: e for k in list(self.table.keys()) if (e := self.get(k)) is not None}


def history_entry(old: CompiledRegistration | None, record: RegistrationRecord) -> dict[str, Any]:
    """One change-history entry (who, when, diff) from the previous registration and the new record."""
    new = record.registration
    action = "delete" if new is None else ("create" if old is None else "update")
    return {
        "at": format_timestamp(record.at_ms),
        "who": record.who,
        "source": record.source,
        "action": action,
        "diff": diff(old, new),
    }


class RegistrationFold:
    """Folds records of `exposure.expectations` into the registrations and history tables."""

    def __init__(
        self,
        parsed: ParsedRegistrations,
        table: MutableMapping[str, dict],
        history: MutableMapping[str, list],
        metrics: Any = None,
    ) -> None:
        self.parsed, self.table, self.history, self.metrics = parsed, table, history, metrics

    def apply(self, key: bytes | None, value: bytes | None) -> str | None:
        """Apply one record; returns the experiment it changed, or None if it was invalid."""
        try:
            record = decode_record(key, value)
        except ValueError as exc:
            # Only our API/CLI/YAML write here, all validated; anything else is counted and ignored.
            log.error("invalid registration record for %r ignored: %s", (key or b"").decode("utf-8", "replace"), exc)
            if self.metrics is not None:
                self.metrics.record_registration("topic", "rejected", "invalid")
            return None
        exp = record.experiment
        entry = history_entry(self.parsed.get(exp), record)
        self.history[exp] = [*(self.history.get(exp) or []), entry][-HISTORY_LIMIT:]
        if record.registration is None or record.document is None:
            if exp in self.table:
                del self.table[exp]
            if self.metrics is not None:
                self.metrics.remove_experiment(exp)
        else:
            self.table[exp] = record.document
            self.parsed.remember(exp, record.document, record.registration)
        return exp


class KafkaRegistrationService:
    """`RegistrationService` of the worker: writes go to the topic, reads come from the folded table."""

    def __init__(
        self,
        send: Callable[[bytes, bytes], Awaitable[Any]],
        parsed: ParsedRegistrations,
        history: TableView,
        observe: Callable[[str], dict[str, Any] | None],
        metrics: Any = None,
        source: str = "api",
    ) -> None:
        self.send = send  # (key, value) -> produced to exposure.expectations
        self.parsed = parsed
        self.history_table = history
        self.observe = observe  # experiment -> observation dict | None
        self.metrics = metrics
        self.source = source

    def all(self) -> dict[str, CompiledRegistration]:
        return self.parsed.all()

    def get(self, experiment: str) -> CompiledRegistration | None:
        return self.parsed.get(experiment)

    async def put(self, registration: CompiledRegistration, who: str) -> None:
        await self.send(registration.experiment.encode(), encode_record(registration, who, self.source))
        if self.metrics is not None:
            self.metrics.record_registration(self.source, "written")

    async def delete(self, experiment: str, who: str) -> None:
        await self.send(experiment.encode(), encode_record(None, who, self.source))
        if self.metrics is not None:
            self.metrics.record_registration(self.source, "deleted")

    def history(self, experiment: str) -> list[dict[str, Any]]:
        return list(self.history_table.get(experiment) or [])

    def observation(self, experiment: str) -> dict[str, Any] | None:
        return self.observe(experiment)


async def read_registrations(bootstrap: KafkaConnection | str, topic: str) -> dict[str, CompiledRegistration]:
    """The valid registrations the topic holds now (read to its end; invalid records skipped,
    as the fold skips them)."""
    out: dict[str, CompiledRegistration] = {}
    for key, value in (await latest_values(bootstrap, topic)).items():
        try:
            record = decode_record(key, value)
        except ValueError:
            continue
        if record.registration is not None:
            out[record.experiment] = record.registration
    return out


class TopicRegistrations:
    """`RegistrationService` straight on the topic, for the worker's start-up YAML sync (before the
    Faust tables exist). Use as `async with TopicRegistrations(bootstrap, topic) as service:`."""

    def __init__(self, bootstrap: KafkaConnection | str, topic: str, source: str = "yaml") -> None:
        self.bootstrap, self.topic, self.source = bootstrap, topic, source
        self._current: dict[str, CompiledRegistration] = {}
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> TopicRegistrations:
        self._current = await read_registrations(self.bootstrap, self.topic)
        self._producer = AIOKafkaProducer(**client_kwargs(self.bootstrap), acks="all")
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._producer is not None:
            await self._producer.stop()

    def all(self) -> dict[str, CompiledRegistration]:
        return dict(self._current)

    def get(self, experiment: str) -> CompiledRegistration | None:
        return self._current.get(experiment)

    async def _send(self, experiment: str, registration: CompiledRegistration | None, who: str) -> None:
        assert self._producer is not None, "use TopicRegistrations as an async context manager"
        await self._producer.send_and_wait(self.topic, key=experiment.encode(),
                                           value=encode_record(registration, who, self.source))

    async def put(self, registration: CompiledRegistration, who: str) -> None:
        await self._send(registration.experiment, registration, who)
        self._current[registration.experiment] = registration

    async def delete(self, experiment: str, who: str) -> None:
        await self._send(experiment, None, who)
        self._current.pop(experiment, None)

    def history(self, experiment: str) -> list[dict[str, Any]]:
        return []

    def observation(self, experiment: str) -> dict[str, Any] | None:
        return None  # no engine state before the worker runs
