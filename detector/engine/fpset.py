"""A growable set of short hash fingerprints: "seen before?" once an experiment outgrows exact sets.

Each key is stored as the top `bits` (default 30) bits of its 64-bit hash. Two different
keys with equal fingerprints make the second look seen, so a false positive only ever
undercounts (never counts a user twice), exactly like a Bloom filter, with probability
(keys stored) / 2^bits for a new key: 1e-4 at 10^5 keys, 1e-3 at 10^6.

Unlike a Bloom filter the fingerprints can be re-packed at any size, so there is no
growth waste: in memory they are a sorted uint32 array, a sorted "pending" array of at most
~8 sqrt(n) (so a batch costs O(batch + sqrt n) and merging into the main array
O(sqrt n) copies per key) and a Python set of the newest <= 64 (small batches probe and
insert with a handful of numpy calls); serialised
they are Elias-Fano coded: per key l = floor(log2(2^bits / n)) low bits plus ~2 bits
of unary high part, i.e. bits - log2(n) + 2..3 bits per key (~15 at 10^5 keys, ~12 at
10^6). Sets merge by exact union of fingerprints.
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np

FP_BITS = 30
_EMPTY = np.empty(0, np.uint32)
_PEND_MIN = 2048


def _merge(a: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Sorted union of sorted `a` and sorted `u` (disjoint), O(len(a) + len(u)) without np.insert's overhead."""
    m = len(u)
    out = np.empty(len(a) + m, np.uint32)
    ins = a.searchsorted(u)
    ins += np.arange(m)
    keep = np.ones(len(out), bool)
    keep[ins] = False
    out[ins] = u
    out[keep] = a
    return out


_TINY_MAX = 64


class FpSet:
    __slots__ = ("main", "pend", "tiny", "bits")

    def __init__(self, bits: int = FP_BITS) -> None:
        if not 8 <= bits <= 32:
            raise ValueError("fingerprint bits must be in 8..32")
        self.bits = bits
        self.main = _EMPTY
        self.pend = _EMPTY
        self.tiny: set[int] = set()  # newest few fingerprints, for the pure-Python small-batch path

    def __len__(self) -> int:
        return len(self.main) + len(self.pend) + len(self.tiny)

    def _flush_tiny(self) -> None:
        if self.tiny:
            self._insert_sorted(np.array(sorted(self.tiny), np.uint32))
            self.tiny = set()

    def _insert_sorted(self, u: np.ndarray) -> None:
        pend = _merge(self.pend, u) if len(self.pend) else u
        main = self.main
        if len(pend) > max(_PEND_MIN, 8 * math.isqrt(len(main))):
            self.main = _merge(main, pend) if len(main) else pend
            self.pend = _EMPTY
        else:
            self.pend = pend

    def values(self) -> np.ndarray:
        """All fingerprints, sorted."""
        self._flush_tiny()
        if not len(self.pend):
            return self.main
        if not len(self.main):
            return self.pend
        return _merge(self.main, self.pend)

    @property
    def nbytes(self) -> int:
        return self.main.nbytes + self.pend.nbytes + 40 * len(self.tiny)

    # -- serialisation: Elias-Fano ----------------------------------------------------------
    def to_obj(self) -> list[Any]:
        v = self.values()
        n = len(v)
        if n == 0:
            return [self.bits, 0, 0, b"", b""]
        lo_bits = max(0, ((1 << self.bits) // n).bit_length() - 1)
        high = (v >> np.uint32(lo_bits)).astype(np.int64)
        nb = n + int(high[-1]) + 1
        unary = np.zeros(nb, bool)
        unary[high + np.arange(n)] = True
        hi_b = np.packbits(unary, bitorder="little").tobytes()
        if lo_bits:
            low = (v & np.uint32((1 << lo_bits) - 1)).astype("<u4")
            bits = np.unpackbits(low.view(np.uint8).reshape(n, 4), axis=1, bitorder="little")[:, :lo_bits]
            lo_b = np.packbits(bits.reshape(-1), bitorder="little").tobytes()
        else:
            lo_b = b""
        return [self.bits, n, lo_bits, hi_b, lo_b]

    @classmethod
    def from_obj(cls, o: list[Any]) -> Self:
        bits, n, lo_bits, hi_b, lo_b = o
        s = cls(bits)
        if n == 0:
            return s
        pos = np.flatnonzero(np.unpackbits(np.frombuffer(hi_b, np.uint8), bitorder="little"))[:n]
        high = (pos - np.arange(n)).astype(np.uint32)
        v = high << np.uint32(lo_bits)
        if lo_bits:
            lb = np.unpackbits(np.frombuffer(lo_b, np.uint8), bitorder="little")[:n * lo_bits].reshape(n, lo_bits)
            full = np.zeros((n, 32), np.uint8)
            full[:, :lo_bits] = lb
            v |= np.packbits(full, axis=1, bitorder="little").view("<u4").reshape(n).astype(np.uint32)
        s.main = v
        return s


def _first_occurrence(k: np.ndarray) -> np.ndarray:
    """True at the first position of each distinct value of `k`."""
    out = np.zeros(len(k), bool)
    if len(k):
        order = k.argsort(kind="stable")
        s = k[order]
        head = np.ones(len(k), bool)
        head[1:] = s[1:] != s[:-1]
        out[order[head]] = True
    return out


class UserSet(FpSet):
    """Seen users, one entry each: (30-bit fingerprint << 1) | enrolled.

    A user first seen eligible-but-not-enrolled and enrolled later is upgraded in place (the
    flag is the lowest bit, so the sorted order does not change). One entry a user, whatever
    the split, instead of one fingerprint per key space: ~1.6 bytes a user serialised where
    every user is enrolled, against ~3 with separate eligible and enrolled fingerprints.
    A fingerprint collision makes a new user look seen (or already enrolled): counts can only
    be low, never high. Keys passed in have the flag bit clear (`keys`, `keys_list`).
    """

    __slots__ = ("hits_enrolled",)

    def __init__(self, bits: int = FP_BITS + 1) -> None:
        super().__init__(bits)
        # distinct keys of the last upsert that were already enrolled before it (the
        # returning-users rule's trials are the batch's users not enrolled before it)
        self.hits_enrolled = 0

    def keys(self, h: np.ndarray) -> np.ndarray:
        """Flag-clear keys of uint64 hashes."""
        return ((h >> np.uint64(65 - self.bits)) << np.uint64(1)).astype(np.uint32)

    def keys_list(self, hs: list[int]) -> list[int]:
        s = 65 - self.bits
        return [(h >> s) << 1 for h in hs]

    def upsert(self, k: np.ndarray, enrolled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Record users (keys `k`, in order; `enrolled` per position). Returns (new user, newly enrolled).

        Same answers as `upsert_small`, i.e. as taking the positions one by one: a key's first
        occurrence is the new user (if absent), its first enrolled occurrence the newly enrolled
        one (unless the key was already enrolled).
        """
        self._flush_tiny()
        order = k.argsort(kind="stable")
        ks = k[order]
        if len(ks) > 1 and (ks[1:] == ks[:-1]).any():
            return self._upsert_repeated(k, enrolled)
        # Distinct keys (the engine passes distinct users; equal keys mean a fingerprint
        # collision): probe in sorted order, and the new entries are already sorted.
        es = enrolled[order]
        present, was_enrolled = self._probe(ks, es)
        self.hits_enrolled = int(np.count_nonzero(was_enrolled))
        new_s = ~present
        new_user = np.empty(len(k), bool)
        new_user[order] = new_s
        newly = np.empty(len(k), bool)
        newly[order] = es & ~was_enrolled
        if new_s.any():
            self._insert_sorted(ks[new_s] | es[new_s].astype(np.uint32))
        return new_user, newly

    def _probe(self, k: np.ndarray, upgrade: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(present, was enrolled) per key; sets the enrolled flag of present keys where `upgrade`."""
        present = np.zeros(len(k), bool)
        was_enrolled = np.zeros(len(k), bool)
        for a in (self.main, self.pend):
            if len(a):
                idx = a.searchsorted(k)
                np.minimum(idx, len(a) - 1, out=idx)
                got = a[idx]
                hit = (got >> 1) == (k >> 1)
                flag = (got & 1).astype(bool)
                present |= hit
                was_enrolled |= hit & flag
                up = hit & ~flag & upgrade
                if up.any():
                    a[idx[up]] |= np.uint32(1)
        return present, was_enrolled

    def _upsert_repeated(self, k: np.ndarray, enrolled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`upsert` where a key occurs more than once."""
        n = len(k)
        first = _first_occurrence(k)
        ie = np.flatnonzero(enrolled)
        first_enr = np.zeros(n, bool)
        first_enr[ie[_first_occurrence(k[ie])]] = True
        present, was_enrolled = self._probe(k, first_enr)
        self.hits_enrolled = int(np.count_nonzero(first & was_enrolled))
        new_user = first & ~present
        newly = first_enr & ~was_enrolled
        if new_user.any():
            nk = k[new_user]
            flags = np.isin(nk, k[first_enr & ~present])
            self._insert_sorted(np.sort(nk | flags.astype(np.uint32)))
        return new_user, newly

    def upsert_small(self, ks: list[int], enrolled: list[bool]) -> tuple[list[bool], list[bool]]:
        """`upsert` for a few keys as Python ints: a handful of numpy calls, then plain Python."""
        found: list[tuple[np.ndarray, int] | None] = [None] * len(ks)
        arr = None
        for a in (self.main, self.pend):
            if len(a):
                if arr is None:
                    arr = np.array(ks, np.uint32)
                idx = a.searchsorted(arr)
                np.minimum(idx, len(a) - 1, out=idx)
                for i, (g, j, k) in enumerate(zip(a[idx].tolist(), idx.tolist(), ks)):
                    if found[i] is None and g >> 1 == k >> 1:
                        found[i] = (a, j)
        tiny = self.tiny
        new_user: list[bool] = []
        newly: list[bool] = []
        hits = 0
        for f, k, e in zip(found, ks, enrolled):
            if f is not None:
                a, j = f
                was = int(a[j]) & 1
                hits += was
                up = bool(e) and not was
                if up:
                    a[j] |= np.uint32(1)
                new_user.append(False)
                newly.append(up)
            elif k in tiny or k | 1 in tiny:
                hits += k | 1 in tiny
                up = bool(e) and k in tiny
                if up:
                    tiny.discard(k)
                    tiny.add(k | 1)
                new_user.append(False)
                newly.append(up)
            else:
                tiny.add(k | 1 if e else k)
                new_user.append(True)
                newly.append(bool(e))
        self.hits_enrolled = hits
        if len(tiny) >= _TINY_MAX:
            self._flush_tiny()
        return new_user, newly

    def enrolled_count(self) -> int:
        return int(np.count_nonzero(self.values() & np.uint32(1)))

    def merge(self, other: "FpSet") -> None:
        """Union; a user enrolled on either side is enrolled."""
        if other.bits != self.bits:
            raise ValueError("cannot merge fingerprint sets of different widths")
        v = np.union1d(self.values(), other.values()).astype(np.uint32)
        if len(v) > 1:
            same = (v[1:] >> 1) == (v[:-1] >> 1)  # k and k|1: keep k|1 (sorted after k)
            if same.any():
                keep = np.ones(len(v), bool)
                keep[:-1][same] = False
                v = v[keep]
        self.main = v
        self.tiny = set()
        self.pend = _EMPTY
