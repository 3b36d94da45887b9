"""What the HTTP layer needs from the worker: the `RegistrationService` protocol.

The worker implements it over the compacted topic `exposure.expectations` (every worker sees every
registration; `put`/`delete` produce a record / a tombstone) and the engine's state
(`observation`). `InMemoryRegistrationService` is a complete in-process implementation for tests,
`replay`, and anything that runs without Kafka.

Shape of `observation(experiment)` (None when the experiment has seen no traffic); the HTTP layer
and `risk.assess` read these keys and pass any others through unchanged:

    {
      "enrolled_users": int,            # distinct enrolled users
      "eligible_users": int,            # distinct users evaluated (enrolled or not)
      "observed_fraction": float|None,  # enrolled / eligible
      "variants": {name: count},        # distinct enrolled users per variant
      "rules": {rule: {"state": "ok"|"firing"|..., "statistic": float|None, ...}},
      "first_event_at": str|None, "last_event_at": str|None,   # RFC 3339
    }

Shape of a `history(experiment)` entry: `{"at": RFC 3339 str, "who": str, "action": "create" |
"update" | "delete", "diff": [{field, old, new}, ...]}`, oldest first.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol, runtime_checkable

from detector.registration.compiled import CompiledRegistration
from detector.timestamps import format_timestamp
from detector.registration.risk import diff


@runtime_checkable
class RegistrationService(Protocol):
    def all(self) -> dict[str, CompiledRegistration]:
        """Current registrations, keyed by experiment."""

    def get(self, experiment: str) -> CompiledRegistration | None: ...

    async def put(self, registration: CompiledRegistration, who: str) -> None:
        """Write the registration (to the compacted topic `exposure.expectations`)."""

    async def delete(self, experiment: str, who: str) -> None:
        """Remove the registration (a tombstone on `exposure.expectations`)."""

    def history(self, experiment: str) -> list[dict[str, Any]]:
        """Changes to the registration, oldest first: {at, who, action, diff}."""

    def observation(self, experiment: str) -> dict[str, Any] | None:
        """Observed vs expected and rule states from the engine; None if no traffic."""


class InMemoryRegistrationService:
    """`RegistrationService` in a dict. `observations` can be set by tests (experiment -> dict);
    `writes` counts put/delete calls so tests can assert that nothing was written."""

    def __init__(
        self,
        initial: dict[str, CompiledRegistration] | None = None,
        *,
        observations: dict[str, dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._items: dict[str, CompiledRegistration] = dict(initial or {})
        self._history: dict[str, list[dict[str, Any]]] = {}
        self.observations: dict[str, dict[str, Any]] = dict(observations or {})
        self.writes = 0
        self._clock = clock

    def all(self) -> dict[str, CompiledRegistration]:
        return dict(self._items)

    def get(self, experiment: str) -> CompiledRegistration | None:
        return self._items.get(experiment)

    def _record(self, experiment: str, who: str, action: str, changes: list[dict[str, Any]]) -> None:
        at = format_timestamp(int(self._clock() * 1000))
        self._history.setdefault(experiment, []).append({"at": at, "who": who, "action": action, "diff": changes})

    async def put(self, registration: CompiledRegistration, who: str) -> None:
        old = self._items.get(registration.experiment)
        self.writes += 1
        self._items[registration.experiment] = registration
        self._record(registration.experiment, who, "create" if old is None else "update", diff(old, registration))

    async def delete(self, experiment: str, who: str) -> None:
        old = self._items.pop(experiment, None)
        self.writes += 1
        if old is not None:
            self._record(experiment, who, "delete", diff(old, None))

    def history(self, experiment: str) -> list[dict[str, Any]]:
        return list(self._history.get(experiment, []))

    def observation(self, experiment: str) -> dict[str, Any] | None:
        return self.observations.get(experiment)
