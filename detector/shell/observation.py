"""The engine's `observe()` dict in the shape the HTTP API serves (flat observed fields)."""

from __future__ import annotations

from typing import Any

from detector.timestamps import format_timestamp


def observation_view(obs: dict[str, Any]) -> dict[str, Any]:
    observed = dict(obs.get("observed") or {})
    for key in ("first_event_at", "last_event_at"):
        if isinstance(observed.get(key), int):
            observed[key] = format_timestamp(observed[key])
    return {**observed, "rules": obs.get("rules", {})}
