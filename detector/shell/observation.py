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
