"""Stable identifiers: Alertmanager label fingerprints and our incident ids.

Both must come out the same on every worker and after every restart, because
receivers (and our own delivery) deduplicate by them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

FNV64_OFFSET = 14695981039346656037
FNV64_PRIME = 1099511628211
_MASK64 = 0xFFFFFFFFFFFFFFFF
_SEPARATOR = 0xFF  # prometheus/common model.SeparatorByte


def fnv1a64(data: bytes, h: int = FNV64_OFFSET) -> int:
    """FNV-1a 64-bit hash of `data`, continuing from `h`."""
    for byte in data:
        h ^= byte
        h = (h * FNV64_PRIME) & _MASK64
    return h


def label_fingerprint(labels: Mapping[str, str]) -> int:
    """Alertmanager's alert fingerprint (prometheus/common `LabelSet.Fingerprint`).

    FNV-1a 64 over the labels sorted by name, each written as name, 0xff, value, 0xff.
    """
    h = FNV64_OFFSET
    sep = bytes([_SEPARATOR])
    for name in sorted(labels):
        h = fnv1a64(name.encode() + sep + str(labels[name]).encode() + sep, h)
    return h


def label_fingerprint_hex(labels: Mapping[str, str]) -> str:
    """The fingerprint as Alertmanager prints it: `%016x`."""
    return f"{label_fingerprint(labels):016x}"


def incident_id(experiment: str, rule: str, first_offending_event_at: int, ordinal: int) -> str:
    """Deterministic incident id.

    `ordinal` counts earlier incidents of the same (experiment, rule), so a breach
    after a resolution is a new incident even if the engine reports the same first
    offending event time.
    """
    raw = f"{experiment}\x00{rule}\x00{first_offending_event_at}\x00{ordinal}".encode()
    return "inc_" + hashlib.sha256(raw).hexdigest()[:20]
