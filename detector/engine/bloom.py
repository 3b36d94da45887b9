"""A scalable, word-blocked Bloom filter over precomputed uint64 hashes, vectorised with numpy.

"Seen before?" for user ids once an experiment outgrows exact sets. A false positive
makes a new user look seen, so counts are only ever undercounted (never a user twice).

Each key picks one 64-bit word per stage and sets K=8 bits inside it, so a probe is one
gather per stage; all stages live in one contiguous array and are probed with a single
(keys x stages) gather, so the cost per batch is a fixed handful of numpy calls. Stages
grow geometrically (x2) and each new stage gets one more bit per key (16 + i), keeping
the summed false-positive rate bounded (~2% at 10^6 keys, measured in tests/bench).

Why not rbloom: its stable `hash_func` is a Python call per item (~2 us here); hashing
a batch in numpy and probing it at once costs a fraction. The bits serialise as plain
bytes. Two filters merge by OR when their stages have equal shapes, else by adding the
other's stages as full stages (membership is "in any stage").
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from detector.engine.hashing import mix64

_U64 = np.uint64
K = 8
BITS_PER_KEY = 16
BITS_STEP = 1


def _table(salt: int) -> np.ndarray:
    # 65536 masks with K/2 bit positions each, derived deterministically from the index
    g = mix64(np.arange(65536, dtype=np.uint64) ^ np.uint64(salt))
    m = np.zeros(65536, np.uint64)
    for i in range(K // 2):
        m |= np.uint64(1) << ((g >> np.uint64(6 * i)) & np.uint64(63))
    return m


_T1 = _table(0x243F6A8885A308D3)
_T2 = _table(0x13198A2E03707344)


def _masks(h: np.ndarray) -> np.ndarray:
    """K bit positions inside one word: two table lookups on 16-bit fields of the hash."""
    m: np.ndarray = _T1[h & _U64(0xFFFF)] | _T2[(h >> _U64(16)) & _U64(0xFFFF)]
    return m


def _words_for(capacity: int, bits_per_key: int) -> int:
    return max(1, -(-capacity * bits_per_key // 64))


class ScalableBloom:
    __slots__ = ("words", "sizes", "offsets", "caps", "counts")

    def __init__(self, initial_capacity: int = 8192) -> None:
        n = _words_for(initial_capacity, BITS_PER_KEY)
        self.words = np.zeros(n, np.uint64)
        self.sizes = np.array([n], np.uint64)
        self.offsets = np.array([0], np.uint64)
        self.caps = [initial_capacity]
        self.counts = [0]

    def _add_stage(self, words: np.ndarray, cap: int, count: int, before_last: bool = False) -> None:
        n = len(words)
        if before_last and len(self.caps):
            # keep the active (last) stage last
            last = self.words[int(self.offsets[-1]):]
            head = self.words[:int(self.offsets[-1])]
            self.words = np.concatenate([head, words, last])
            sizes = self.sizes.tolist()
            sizes.insert(len(sizes) - 1, n)
            self.caps.insert(len(self.caps) - 1, cap)
            self.counts.insert(len(self.counts) - 1, count)
        else:
            self.words = np.concatenate([self.words, words])
            sizes = self.sizes.tolist() + [n]
            self.caps.append(cap)
            self.counts.append(count)
        self.sizes = np.array(sizes, np.uint64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.uint64)

    def _index(self, h: np.ndarray, stage: int | None = None) -> np.ndarray:
        hi = h >> _U64(32)
        idx: np.ndarray
        if stage is None:  # (keys, stages)
            idx = self.offsets[None, :] + ((hi[:, None] * self.sizes[None, :]) >> _U64(32))
        else:
            idx = self.offsets[stage] + ((hi * self.sizes[stage]) >> _U64(32))
        return idx

    def _probe(self, h: np.ndarray, masks: np.ndarray) -> np.ndarray:
        hit: np.ndarray
        if len(self.caps) == 1:
            hit = (self.words[self._index(h, 0)] & masks) == masks
        else:
            hit = ((self.words[self._index(h)] & masks[:, None]) == masks[:, None]).any(axis=1)
        return hit

    def add_new(self, h: np.ndarray) -> np.ndarray:
        """Probe and insert distinct hashes; returns a bool mask, True where the key was new."""
        if len(h) == 0:
            return np.zeros(0, bool)
        masks = _masks(h)
        new = ~self._probe(h, masks)
        idx = np.flatnonzero(new)
        while len(idx):
            room = self.caps[-1] - self.counts[-1]
            if room <= 0:
                cap = self.caps[-1] * 2
                self._add_stage(np.zeros(_words_for(cap, BITS_PER_KEY + BITS_STEP * len(self.caps)), np.uint64),
                                cap, 0)
                room = cap
            take, idx = idx[:room], idx[room:]
            np.bitwise_or.at(self.words, self._index(h[take], len(self.caps) - 1), masks[take])
            self.counts[-1] += len(take)
        return new

    def contains(self, h: np.ndarray) -> np.ndarray:
        if len(h) == 0:
            return np.zeros(0, bool)
        return self._probe(h, _masks(h))

    @property
    def nbytes(self) -> int:
        return self.words.nbytes

    @property
    def stages(self) -> int:
        return len(self.caps)

    def to_obj(self) -> list[Any]:
        return [self.words.tobytes(), self.sizes.tolist(), list(self.caps), list(self.counts)]

    @classmethod
    def from_obj(cls, o: list[Any]) -> Self:
        words, sizes, caps, counts = o
        b = cls.__new__(cls)
        b.words = np.frombuffer(words, np.uint64).copy()
        b.sizes = np.array(sizes, np.uint64)
        b.offsets = np.concatenate([[0], np.cumsum(b.sizes)[:-1]]).astype(np.uint64)
        b.caps, b.counts = list(caps), list(counts)
        return b

    def merge(self, other: "ScalableBloom") -> None:
        """Union: OR when the stage layouts are equal, else the other's stages are added as full stages."""
        if self.sizes.tolist() == other.sizes.tolist():
            self.words |= other.words
            self.counts = [min(c, a + b) for c, a, b in zip(self.caps, self.counts, other.counts)]
            return
        for i, cap in enumerate(other.caps):
            off, n = int(other.offsets[i]), int(other.sizes[i])
            self._add_stage(other.words[off:off + n].copy(), cap, cap, before_last=True)
