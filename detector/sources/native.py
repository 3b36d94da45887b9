"""The detector's own assignment event (contract in README "Assignment events"): the native hot path.

This is `detector.events.decode_batch` itself (msgspec straight into `Assignment`, proven
equal to the per-record decoder); the other formats are measured against it.
"""

from __future__ import annotations

from collections.abc import Mapping

from detector.events import Assignment, Rejected, decode, decode_batch

from ._common import Batch, ensure_options

FORMAT = "native"
OPTIONS: dict[str, tuple[str, ...] | None] = {}


class NativeDecoder:
    format = FORMAT

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        self.options = ensure_options(FORMAT, options or {}, OPTIONS)

    def decode_batch(self, values: list, record_ts: list[int]) -> Batch:
        return decode_batch(values, record_ts)

    def decode_one(self, value: bytes | None, record_ts_ms: int = 0) -> Assignment | Rejected:
        return decode(value, record_ts_ms)


def decoder(options: Mapping[str, str] | None = None) -> NativeDecoder:
    return NativeDecoder(options)
