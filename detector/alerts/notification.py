"""The notification: one message about one incident, the unit of the outbox and of delivery.

A notification carries everything every sink needs, so delivery never looks
anything up. Its `id` is derived from the incident and a counter, never from a
clock, so a worker that restarts and re-derives its notifications produces the
same ids and receivers (and our delivery log) can deduplicate by them.

Ids:
  `{incident_id}:firing:{n}`   n-th firing notification (1 = first page, then repeats)
  `{incident_id}:refresh:{n}`  keep-alive re-send for sinks that expire alerts (Alertmanager)
  `{incident_id}:resolved`     the one resolved notification
"""

from __future__ import annotations

from typing import Any, Literal, cast

import msgspec

Status = Literal["firing", "resolved"]
Kind = Literal["firing", "repeat", "refresh", "resolved"]


class BlastRadius(msgspec.Struct, frozen=True):
    """How many users are out of target, and a bounded sample of their ids."""

    count: int
    sample_ids: tuple[str, ...] = ()


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One notification about one incident, as written to the `exposure.alerts` outbox."""

    id: str
    incident_id: str
    status: Status
    kind: Kind
    sequence: int  # 1-based counter within the kind (firing/repeat share one counter)
    experiment: str
    rule: str
    severity: str
    summary: str
    started_at: int  # epoch ms: when the incident opened (detection)
    ended_at: int | None  # epoch ms: when it resolved; None while firing
    first_offending_event_at: int
    detected_at: int
    observed: dict[str, Any]
    expected: dict[str, Any]
    blast_radius: BlastRadius
    owner: str | None = None
    labels: dict[str, str] = {}
    group_key: str = ""  # notifications released together share a group key (the experiment)
    created_at: int = 0  # epoch ms the lifecycle emitted it (the caller's clock)
    resolved_by: str | None = None  # "quiet_period" | "registration_change" | "operator:<who>"

    @property
    def is_first_page(self) -> bool:
        """True for the first firing notification: the one that may trigger auto-mitigation."""
        return self.kind == "firing" and self.sequence == 1

    def to_dict(self) -> dict[str, Any]:
        return cast("dict[str, Any]", msgspec.to_builtins(self))

    def to_bytes(self) -> bytes:
        """JSON for the outbox topic."""
        return msgspec.json.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Notification":
        return msgspec.json.decode(data, type=cls)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Notification":
        return msgspec.convert(data, type=cls)
