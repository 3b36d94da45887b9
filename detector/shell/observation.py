"""The engine's `Observation` in the shape the HTTP API serves (flat observed fields)."""

from __future__ import annotations

from typing import Any

import msgspec

from detector.engine import Observation
from detector.timestamps import format_timestamp


def observation_view(obs: Observation) -> dict[str, Any]:
    observed = msgspec.to_builtins(obs.observed)
    for key in ("first_event_at", "last_event_at"):
        if isinstance(observed.get(key), int):
            observed[key] = format_timestamp(observed[key])
    return {**observed, "rules": msgspec.to_builtins(obs.rules)}


def exposures(ingest, publisher, registration_of, *, include_registered: bool = False) -> list:
    """`discovery.Exposure` of every experiment this worker holds (unregistered ones unless asked for all)."""
    from detector.discovery import exposure

    open_rules: dict[str, list[str]] = {}
    for inc in publisher.incidents():
        if inc.status == "firing":
            open_rules.setdefault(inc.experiment, []).append(inc.rule)
    out = []
    for det in list(ingest.partitions.values()):
        for name, state in list(det.states.items()):
            reg = registration_of(name)
            if reg is not None and not include_registered:
                continue
            out.append(exposure(state, reg, det.attributes.of(name), open_rules.get(name, ())))
    return sorted(out, key=lambda e: e.experiment)


def exposure_of(ingest, registration_of):
    """experiment -> the short exposure the `unregistered` digest lists (None if not held here)."""
    from detector.discovery import digest_entry, exposure

    def look(name: str):
        for det in ingest.partitions.values():
            state = det.states.get(name)
            if state is not None:
                return digest_entry(exposure(state, registration_of(name), det.attributes.of(name)))
        return None

    return look
