"""Per-experiment state: distinct users, variant counts, offenders, sequential-test state.

Two regimes for "have we seen this user?":
- exact: a set of eligible ids and a dict enrolled id -> first variant, while the
  experiment has at most `EngineConfig.exact_limit` distinct users (small QA and
  allowlisted experiments get exact answers, including re-judging any allowlist);
- sketch: a user set (detector.engine.fpset.UserSet): one entry a user, its 30-bit
  fingerprint with an "enrolled" flag bit, upgraded in place when the user enrols;
  Elias-Fano coded in checkpoints (~2 bytes a user at 100k users, ~1.6 at 1M). Counts are
  lower bounds: a fingerprint collision makes a new user look seen. A new enrolled user that
  collides with a not-enrolled entry still counts as enrolled (S is the number of distinct
  fingerprints among enrolled users), so S is the lower bound max_users alerts on, and
  `enrolled_estimate` inverts the collisions (linear counting). The fraction rule does NOT
  use S/n: it counts each user once, at their first evaluation (f_x enrolled of n), and a
  colliding user is dropped from both, whatever their status, so the ratio has no collision
  bias at any size (since format 6).

Offender records are [first seen ms, variant, rule bitmask] (bit order: RULE_BITS).

Serialisation is msgpack of a msgspec struct (arrays, not maps) plus raw sketch bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import msgspec
import numpy as np

from detector.engine.bloom import ScalableBloom
from detector.engine.fpset import UserSet
from detector.engine.hashing import hash64
from detector.engine.stats import RATIOS, SRM_CONCENTRATIONS, linear_count

RULES = (
    "unregistered",
    "allowlist_breach",
    "max_users_exceeded",
    "fraction_exceeded",
    "segment_breach",
    "outside_window",
    "sample_ratio_mismatch",
)
_FORMAT = 6  # 3: XXH3-64 ids; 4: one flagged fingerprint per user (UserSet); 5: no HLL; 6: first-evaluation e-detector
# offender records carry their rules as a bitmask; bits in the order process_batch judges them
RULE_BITS = {"unregistered": 1, "allowlist_breach": 2, "segment_breach": 4, "outside_window": 8,
             "max_users_exceeded": 16}
MASK_RULES = tuple(tuple(r for r, b in RULE_BITS.items() if m & b) for m in range(32))


@dataclass(frozen=True, slots=True)
class EngineConfig:
    exact_limit: int = 100  # distinct users held exactly (memory: ~150 B per user in a Python set)
    blast_radius_limit: int = 1_000_000  # offender ids kept; beyond, counted only
    sample_ids_limit: int = 1000  # ids carried by a finding
    fraction_ratios: tuple[float, ...] = RATIOS
    srm_concentrations: tuple[float, ...] = SRM_CONCENTRATIONS
    # --- statistics (fraction / split rules; README "Statistics") ---
    alpha: float = 1e-4  # per-experiment lifetime false-alarm budget when the registration sets none
    window_grace_ms: int = 3_600_000  # outside_window: accepted clock skew at both edges of the window
    segment_missing_breach: bool = False  # an enrolled event without attributes breaches declared segments
    unregistered_severity: str = "warning"
    fingerprint_bits: int = 30  # seen-set fingerprints: new-user false positive = keys / 2^bits
    small_batch_keys: int = 24  # batches with at most this many distinct users probe the user set in plain Python


DEFAULT_CONFIG = EngineConfig()


class _Snap(msgspec.Struct, array_like=True):
    fmt: int
    experiment: str
    events: int
    first_ts: int | None
    last_ts: int | None
    enr_min_ts: int | None
    enr_max_ts: int | None
    n: int
    s: int
    variants: dict[str, int]
    variant_none: int
    seen: list[str] | None
    enr: dict[str, str | None] | None
    fset: list | None
    offenders: dict[str, list]
    offender_count: int
    overflow: list | None
    rule_count: dict[str, int]
    rule_first: dict[str, int]
    rule_last: dict[str, int]
    rule_samples: dict[str, list[str]]
    seg_attrs: dict[str, dict[str, str] | None]
    win_ts: dict[str, list[int]]
    f_x: int  # users enrolled at their first evaluation (of n)
    f_p0: float | None  # p0 of the last look
    f_lr: list[float] | None  # ln R_j of the running segment (None: segment not started)
    f_seg: int  # segment number (1 = no alarm, no merge yet)
    f_sn: int  # trials / enrolled trials in the running segment
    f_sx: int
    f_start: int | None
    f_onset: int | None  # where the running segment's evidence last started rising (onset estimate)
    f_alarms: int
    f_stat: float | None
    seg_missing: int  # enrolled users of a segmented experiment seen without attributes
    srm_key: list | None
    srm_seg: int
    srm_base: dict[str, int]
    srm_start: int | None
    srm_alarms: int
    srm_stat: float | None
    mu_reported: int
    un_reported: int


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Snap)
_FIELDS = _Snap.__struct_fields__


class ExperimentState:
    """Mutable state of one experiment. Create with `ExperimentState.new(key)`."""

    __slots__ = tuple("_off" if f == "offenders" else f for f in _FIELDS)

    @classmethod
    def new(cls, experiment: str) -> "ExperimentState":
        st = cls.__new__(cls)
        st.fmt = _FORMAT
        st.experiment = experiment
        st.events = 0
        st.first_ts = st.last_ts = st.enr_min_ts = st.enr_max_ts = None
        st.n = st.s = 0
        st.variants = {}
        st.variant_none = 0
        st.seen = set()
        st.enr = {}
        st.fset = None
        st._off = {}
        st.offender_count = 0
        st.overflow = None
        st.rule_count, st.rule_first, st.rule_last, st.rule_samples = {}, {}, {}, {}
        st.seg_attrs, st.win_ts = {}, {}
        st.f_x = 0
        st.f_p0 = None
        st.f_lr = None
        st.f_seg = 1
        st.f_sn = st.f_sx = 0
        st.f_start = st.f_onset = None
        st.f_alarms = 0
        st.f_stat = None
        st.seg_missing = 0
        st.srm_key = None
        st.srm_seg = 1
        st.srm_base = {}
        st.srm_start = None
        st.srm_alarms = 0
        st.srm_stat = None
        st.mu_reported = 0
        st.un_reported = 0
        return st

    # -- regime ---------------------------------------------------------------------------
    @property
    def exact(self) -> bool:
        return self.fset is None

    def to_sketch(self, config: EngineConfig = DEFAULT_CONFIG) -> None:
        """Switch from exact sets to the user set (one way)."""
        if self.fset is not None:
            return
        fs = self.fset = UserSet(config.fingerprint_bits + 1)
        seen = sorted(self.seen)
        fs.upsert(fs.keys(hash64(seen)), np.array([u in self.enr for u in seen], bool))
        self.seen = None
        self.enr = None

    def enrolled_lower_bound(self) -> int:
        """A lower bound of distinct enrolled users: exact, else the user set's enrolled count.

        Fingerprint collisions only ever hide a user, so the count is low by ~n^2 / 2^31 on
        average (~0.05% at 1M users), never high.
        """
        return len(self.enr) if self.fset is None else self.s

    def enrolled_estimate(self) -> float:
        """Distinct enrolled users: exact, else the user set's count corrected for the collisions expected."""
        if self.fset is None:
            return float(len(self.enr))
        # S = distinct fingerprints among the enrolled users, in 2^(bits-1) slots (the last bit is the flag)
        return linear_count(self.s, 2.0 ** (self.fset.bits - 1))

    # -- offenders --------------------------------------------------------------------------
    def offenders(self) -> Iterator[tuple[str, int, str | None, tuple[str, ...]]]:
        """Out-of-target users kept exactly (up to blast_radius_limit): id, first seen ms, variant, rules."""
        mr = MASK_RULES
        for uid, (ts, variant, mask) in self._off.items():
            yield uid, ts, variant, mr[mask]

    # -- serialisation ----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        vals = {f: getattr(self, f) for f in _FIELDS if f != "offenders"}
        if self.fset is None:
            vals["seen"] = sorted(self.seen)
        else:
            vals["seen"] = None
            vals["fset"] = self.fset.to_obj()
        vals["offenders"] = self._off
        vals["overflow"] = None if self.overflow is None else self.overflow.to_obj()
        return _encoder.encode(_Snap(**vals))

    @classmethod
    def from_bytes(cls, data: bytes) -> "ExperimentState":
        snap = _decoder.decode(data)
        if snap.fmt != _FORMAT:
            raise ValueError(f"unsupported state format {snap.fmt}")
        st = cls.__new__(cls)
        for f in _FIELDS:
            if f != "offenders":
                setattr(st, f, getattr(snap, f))
        if snap.fset is None:
            st.seen = set(snap.seen or ())
            st.enr = dict(snap.enr or {})
        else:
            st.fset = UserSet.from_obj(snap.fset)
        st._off = snap.offenders
        st.overflow = None if snap.overflow is None else ScalableBloom.from_obj(snap.overflow)
        return st

    def memory_bytes(self) -> int:
        """Approximate resident size of the state (sketch bytes + Python objects)."""
        import sys

        size = 0
        if self.fset is None:
            size += sys.getsizeof(self.seen) + sys.getsizeof(self.enr)
            size += sum(sys.getsizeof(u) for u in self.seen)
            size += sum(sys.getsizeof(u) for u in self.enr if u not in self.seen)
        else:
            size += self.fset.nbytes
        size += sys.getsizeof(self._off) + sum(
            sys.getsizeof(u) + 100 for u in self._off)  # id + [ts, variant, mask] record
        if self.overflow is not None:
            size += self.overflow.nbytes
        size += 600  # scalar fields, small dicts
        return size

    # -- merge ------------------------------------------------------------------------------
    def merge(self, other: "ExperimentState", config: EngineConfig = DEFAULT_CONFIG) -> None:
        """Fold `other` (same experiment) into self.

        Exact while both are exact and small (set union). Otherwise sets become user sets:
        their union gives n and s (a user on both sides counts once, enrolled if either side
        says so), while variant counts ADD, which assumes the two states saw disjoint users
        (true for user-partitioned streams). What cannot merge: the paths of the
        sequential tests: they restart at the merge point in a new segment of their alpha
        budget (detector.engine.budget), which keeps the lifetime bound. The first-evaluation
        enrolled counts add, like the variant counts. Offender records union (earliest
        first-seen, union of rules) up to blast_radius_limit.
        """
        if other.experiment != self.experiment:
            raise ValueError("cannot merge states of different experiments")
        o = other
        self.events += o.events
        for f, fn in (("first_ts", min), ("last_ts", max), ("enr_min_ts", min), ("enr_max_ts", max)):
            a, b = getattr(self, f), getattr(o, f)
            setattr(self, f, b if a is None else a if b is None else fn(a, b))
        if self.fset is None and o.fset is None:
            self.seen |= o.seen
            for u, v in o.enr.items():
                self.enr.setdefault(u, v)
            self.n, self.s = len(self.seen), len(self.enr)
            self.variants, self.variant_none = {}, 0
            self.f_x = min(self.f_x + o.f_x, self.s)  # disjoint users (user-partitioned streams)
            for v in self.enr.values():
                if v is None:
                    self.variant_none += 1
                else:
                    self.variants[v] = self.variants.get(v, 0) + 1
            if self.n > config.exact_limit:
                self.to_sketch(config)
        else:
            if o.fset is None:
                o = ExperimentState.from_bytes(o.to_bytes())
                o.to_sketch(config)
            self.to_sketch(config)
            self.fset.merge(o.fset)
            self.n, self.s = len(self.fset), self.fset.enrolled_count()
            for v, c in o.variants.items():
                self.variants[v] = self.variants.get(v, 0) + c
            self.variant_none += o.variant_none
            self.f_x = min(self.f_x + o.f_x, self.s)  # disjoint users (user-partitioned streams)
        # offenders: stored records union; counts beyond the stored records add
        mine = self._off
        limit = config.blast_radius_limit
        rules_all = set(self.rule_count) | set(o.rule_count)
        ovf = {r: max(0, self.rule_count.get(r, 0) - _stored(self, r))
               + max(0, o.rule_count.get(r, 0) - _stored(o, r)) for r in rules_all}
        ovf_users = max(0, self.offender_count - len(mine)) + max(0, o.offender_count - len(o._off))
        for uid, (ts, v, mask) in o._off.items():
            rec = mine.get(uid)
            if rec is not None:
                rec[0] = min(rec[0], ts)
                rec[2] |= mask
            elif len(mine) < limit:
                mine[uid] = [ts, v, mask]
            else:
                ovf_users += 1
                for r in MASK_RULES[mask]:
                    ovf[r] = ovf.get(r, 0) + 1
        self.offender_count = len(mine) + ovf_users
        if o.overflow is not None:
            if self.overflow is None:
                self.overflow = ScalableBloom(1024)
            self.overflow.merge(o.overflow)
        for r in rules_all:
            self.rule_count[r] = _stored(self, r) + ovf.get(r, 0)
        for r, t in o.rule_first.items():
            self.rule_first[r] = min(t, self.rule_first.get(r, t))
        for r, t in o.rule_last.items():
            self.rule_last[r] = max(t, self.rule_last.get(r, t))
        for r, ids in o.rule_samples.items():
            cur = self.rule_samples.setdefault(r, [])
            have = set(cur)
            cur.extend(u for u in ids if u not in have)
            del cur[config.sample_ids_limit:]
        for uid, a in o.seg_attrs.items():
            if uid in mine:
                self.seg_attrs.setdefault(uid, a)
        for uid, (lo, hi) in o.win_ts.items():
            if uid in mine:
                cur = self.win_ts.get(uid)
                self.win_ts[uid] = [lo, hi] if cur is None else [min(cur[0], lo), max(cur[1], hi)]
        # sequential tests restart on the merged counts, in a new segment of each rule's budget
        # (each side's spent segments stay spent: see detector.engine.budget)
        self.f_lr = None
        self.f_onset = None
        self.f_sn = self.f_sx = 0
        self.f_seg = max(self.f_seg, o.f_seg) + 1
        self.f_alarms += o.f_alarms
        self.seg_missing += o.seg_missing
        self.srm_key = None
        self.srm_seg = max(self.srm_seg, o.srm_seg) + 1
        self.srm_alarms += o.srm_alarms
        self.mu_reported = max(self.mu_reported, o.mu_reported)
        self.un_reported = max(self.un_reported, o.un_reported)


def _stored(st: ExperimentState, rule: str) -> int:
    bit = RULE_BITS.get(rule, 0)
    return sum(1 for rec in st._off.values() if rec[2] & bit)
