"""Stable 64-bit hashes of user ids, computed for a whole batch at once with numpy.

Python's `hash()` of a str is salted per process, so it cannot key a filter that is
checkpointed and restored elsewhere, and hashlib costs ~1.5 us per call. Definition
(the same in the vectorised and the scalar path): the UTF-8 bytes are zero-padded to a
multiple of 8 and read as little-endian 64-bit words w_j; h = SEED; for each word
h = (h ^ w_j) * P; h ^= h >> 29; finally h = splitmix64(h ^ len_bytes * GOLDEN).
Keys of equal length are hashed together as an (n, words) matrix, so the cost is a
handful of numpy operations per batch rather than a Python call per key.
"""

from __future__ import annotations

import numpy as np

_U64 = np.uint64
_M64 = (1 << 64) - 1
SEED = 0xCBF29CE484222325
P = 0x9E3779B97F4A7C15 | 1  # odd multiplier
GOLDEN = 0x9E3779B97F4A7C15


def mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (in place on a uint64 array, also returned)."""
    with np.errstate(over="ignore"):
        h ^= h >> _U64(30)
        h *= _U64(0xBF58476D1CE4E5B9)
        h ^= h >> _U64(27)
        h *= _U64(0x94D049BB133111EB)
        h ^= h >> _U64(31)
    return h


def _mix_int(h: int) -> int:
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & _M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & _M64
    return h ^ (h >> 31)


def hash64_one(key: str) -> int:
    """Scalar reference implementation (used for non-ASCII keys and in tests)."""
    b = key.encode("utf-8", "surrogatepass")
    n = len(b)
    b += b"\x00" * (-n % 8)
    h = SEED
    for j in range(0, len(b), 8):
        h = ((h ^ int.from_bytes(b[j:j + 8], "little")) * P) & _M64
        h ^= h >> 29
    return _mix_int(h ^ ((n * GOLDEN) & _M64))


def _hash_equal_ascii(buf: bytes, n: int, length: int) -> np.ndarray:
    arr = np.frombuffer(buf, np.uint8).reshape(n, length)
    words = -(-length // 8)
    if length % 8 or length == 0:
        padded = np.zeros((n, max(1, words) * 8), np.uint8)
        padded[:, :length] = arr
        arr = padded
    w = arr.view("<u8")
    h = np.full(n, SEED, np.uint64)
    p = _U64(P)
    s29 = _U64(29)
    with np.errstate(over="ignore"):
        for j in range(words):
            h ^= w[:, j]
            h *= p
            h ^= h >> s29
        h ^= _U64((length * GOLDEN) & _M64)
    return mix64(h)


def hash64(keys: list[str]) -> np.ndarray:
    """One uint64 per key, stable across processes."""
    k = len(keys)
    if k == 0:
        return np.empty(0, np.uint64)
    lens = list(map(len, keys))
    first = lens[0]
    if lens.count(first) == k:
        buf = "".join(keys).encode("utf-8", "surrogatepass")
        if len(buf) == k * first:
            return _hash_equal_ascii(buf, k, first)
    out = np.empty(k, np.uint64)
    la = np.array(lens)
    for length in np.unique(la).tolist():
        idx = np.flatnonzero(la == length)
        sub = [keys[i] for i in idx.tolist()]
        buf = "".join(sub).encode("utf-8", "surrogatepass")
        if len(buf) == len(sub) * length:
            out[idx] = _hash_equal_ascii(buf, len(sub), length)
        else:
            out[idx] = np.array([hash64_one(s) for s in sub], np.uint64)
    return out


_PAD = tuple(b"\x00" * i for i in range(8))
_UNPACK = tuple(__import__("struct").Struct(f"<{i}Q").unpack for i in range(33))


def hash64_list(keys) -> list[int]:
    """`hash64` for a few keys as Python ints, without numpy (small-batch path; same values)."""
    out = []
    append = out.append
    M = _M64
    for key in keys:
        b = key.encode("utf-8", "surrogatepass")
        n = len(b)
        r = n & 7
        if r:
            b += _PAD[8 - r]
        nw = len(b) >> 3
        h = SEED
        for w in (_UNPACK[nw](b) if nw <= 32 else [int.from_bytes(b[j:j + 8], "little") for j in range(0, len(b), 8)]):
            h = ((h ^ w) * P) & M
            h ^= h >> 29
        h ^= (n * GOLDEN) & M
        h ^= h >> 30
        h = (h * 0xBF58476D1CE4E5B9) & M
        h ^= h >> 27
        h = (h * 0x94D049BB133111EB) & M
        append(h ^ (h >> 31))
    return out


def mix64_int(h: int) -> int:
    """Scalar `mix64`."""
    return _mix_int(h)
