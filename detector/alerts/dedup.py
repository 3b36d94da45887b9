"""Which (sink, notification id) pairs were already delivered: the last line against double pages.

The outbox may hand a notification to delivery twice (a crash after sending but
before committing the offset, or a lifecycle that re-derived the same
notification after restoring an older snapshot). Ids are deterministic, so a
bounded, serializable record of delivered pairs makes the second send a no-op.
Keep it in a changelog-backed table next to the lifecycle state.
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec


class DeliveryLog:
    def __init__(self, capacity: int = 100_000, entries: list[str] | None = None):
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict((e, None) for e in (entries or []))

    @staticmethod
    def _key(sink: str, notification_id: str) -> str:
        return f"{sink}\x00{notification_id}"

    def already_delivered(self, sink: str, notification_id: str) -> bool:
        return self._key(sink, notification_id) in self._seen

    def record(self, sink: str, notification_id: str) -> None:
        """Remember a finished delivery (delivered or dead-lettered: either way, do not send again)."""
        self._seen[self._key(sink, notification_id)] = None
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def to_bytes(self) -> bytes:
        return msgspec.json.encode({"capacity": self.capacity, "entries": list(self._seen)})

    @classmethod
    def from_bytes(cls, data: bytes) -> "DeliveryLog":
        raw = msgspec.json.decode(data)
        return cls(raw["capacity"], raw["entries"])
