"""Records the notification stages keep in a changelog-backed table (digest numbering, rate-limit windows).

Written as JSON bytes; read back as bytes from this process's own writes, or as the decoded JSON
(a dict) once the table was restored from its changelog (Faust's value serializer decodes JSON),
e.g. on another worker after a rebalance. Both come back as the same typed struct.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)


def read_record(store: Mapping[str, Any], key: str, cls: type[T]) -> T:
    raw = store.get(key)
    if not raw:
        return cls()
    if isinstance(raw, (bytes, bytearray, str)):
        return msgspec.json.decode(raw, type=cls)
    return msgspec.convert(raw, cls)


def write_record(store: Any, key: str, record: msgspec.Struct) -> None:
    store[key] = msgspec.json.encode(record)
