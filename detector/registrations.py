"""Registrations as the worker sees them: the compacted topic, folded into a Faust table.

Record format on `exposure.expectations` (key = experiment, UTF-8):
  {"registration": {...canonical registration...} | null, "who": str, "at": epoch ms, "source": "api|cli|yaml"}
A null registration is a deletion (kept as a value, not a tombstone, so the
history of a key survives until compaction and Faust streams see it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from detector.expectations import Expectation
from detector.registration.model import expectation_to_dict, parse_expectation


def encode_record(expectation: Expectation | None, who: str, source: str, at_ms: int | None = None) -> bytes:
    return orjson.dumps(
        {
            "registration": None if expectation is None else expectation_to_dict(expectation),
            "who": who,
            "at": int(time.time() * 1000) if at_ms is None else at_ms,
            "source": source,
        }
    )


def decode_record(value: bytes) -> dict[str, Any]:
    rec = orjson.loads(value)
    if not isinstance(rec, dict) or "registration" not in rec:
        raise ValueError("not a registration record")
    return rec


class ParsedRegistrations:
    """Parsed `Expectation`s over a table of raw registration dicts, re-parsed only when a value changes."""

    def __init__(self, table: Mapping[str, dict]) -> None:
        self.table = table
        self._cache: dict[str, tuple[dict, Expectation]] = {}

    def get(self, experiment: str) -> Expectation | None:
        raw = self.table.get(experiment)
        if raw is None:
            return None
        hit = self._cache.get(experiment)
        if hit is not None and hit[0] is raw:
            return hit[1]
        exp = parse_expectation(raw)
        self._cache[experiment] = (raw, exp)
        return exp

    def all(self) -> dict[str, Expectation]:
        return {k: e for k in list(self.table.keys()) if (e := self.get(k)) is not None}
