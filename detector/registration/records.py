"""A registration's record on the compacted topic `exposure.expectations` (the topic keeps its
historical name: it is a contract).

Key = experiment (UTF-8). Value (JSON):
  {"registration": {...canonical registration...} | null, "who": str, "at": epoch ms, "source": "api|cli|yaml"}
A null registration is a deletion (kept as a value, not a tombstone, so the history of a key
survives until compaction and Faust streams see it).

`decode_record` decodes *and validates* a record once; everything downstream (the table fold,
the change history, the worker's start-up wait) takes the `RegistrationRecord` it returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from detector.registration.compiled import CompiledRegistration
from detector.registration.model import parse_registration, registration_to_dict


@dataclass(frozen=True)
class RegistrationRecord:
    experiment: str
    registration: CompiledRegistration | None  # None: the registration was deleted
    document: dict[str, Any] | None  # the canonical form as stored (what the table holds)
    who: str = "unknown"
    at_ms: int = 0
    source: str = "unknown"


def encode_record(registration: CompiledRegistration | None, who: str, source: str, at_ms: int | None = None) -> bytes:
    return orjson.dumps(
        {
            "registration": None if registration is None else registration_to_dict(registration),
            "who": who,
            "at": int(time.time() * 1000) if at_ms is None else at_ms,
            "source": source,
        }
    )


def decode_record(key: bytes | str | None, value: bytes | None) -> RegistrationRecord:
    """Decode and validate one record. Raises `ValueError` (a `RegistrationError` when the
    registration itself is invalid or names another experiment than the key)."""
    experiment = key.decode("utf-8", "replace") if isinstance(key, bytes) else (key or "")
    if value is None:
        raise ValueError("a tombstone, not a registration record")
    rec = orjson.loads(value)
    if not isinstance(rec, dict) or "registration" not in rec:
        raise ValueError("not a registration record")
    doc = rec["registration"]
    registration = None if doc is None else parse_registration(doc, path_experiment=experiment)
    at = rec.get("at", 0)
    return RegistrationRecord(
        experiment=experiment,
        registration=registration,
        document=doc,
        who=str(rec.get("who", "unknown")),
        at_ms=int(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else 0,
        source=str(rec.get("source", "unknown")),
    )
