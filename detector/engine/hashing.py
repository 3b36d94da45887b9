"""Stable 64-bit hashes of user ids: XXH3-64 (python-xxhash) of the id's UTF-8 bytes.

Python's `hash()` of a str is salted per process, so it cannot key a filter that is
checkpointed and restored elsewhere; hashlib costs ~1.5 us a call. XXH3 is a C call of
~0.2 us whatever the batch size, so one definition serves the engine's small per-experiment
batches (a few keys: numpy's fixed cost per call would dominate) and the large ones alike.
Lone surrogates (possible in JSON-decoded strings) are encoded with "surrogatepass".
The values key checkpointed filters: changing the definition needs a new state format.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import repeat

import numpy as np
from xxhash import xxh3_64_intdigest

_U64 = np.uint64


def _utf8(keys: Sequence[str]) -> Iterable[bytes]:
    """The keys' UTF-8 bytes. Many keys: one join, encode and split (C loops) instead of a call each."""
    if len(keys) > 32:
        parts = "\x00".join(keys).encode("utf-8", "surrogatepass").split(b"\x00")
        if len(parts) == len(keys):  # no key contained the separator
            return parts
    return map(str.encode, keys, repeat("utf-8"), repeat("surrogatepass"))


def hash64(keys: list[str]) -> np.ndarray:
    """One uint64 per key, stable across processes."""
    keys = keys if isinstance(keys, list) else list(keys)
    return np.fromiter(map(xxh3_64_intdigest, _utf8(keys)), np.uint64, len(keys))


def hash64_list(keys: Sequence[str]) -> list[int]:
    """`hash64` as Python ints (the small-batch path; same values)."""
    return list(map(xxh3_64_intdigest, _utf8(keys)))


def hash64_one(key: str) -> int:
    return xxh3_64_intdigest(key.encode("utf-8", "surrogatepass"))


def mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (in place on a uint64 array, also returned)."""
    with np.errstate(over="ignore"):
        h ^= h >> _U64(30)
        h *= _U64(0xBF58476D1CE4E5B9)
        h ^= h >> _U64(27)
        h *= _U64(0x94D049BB133111EB)
        h ^= h >> _U64(31)
    return h
