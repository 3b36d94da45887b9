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
  bias at any size (since format 7).

Offender records are [first seen ms, variant, rule bitmask] (each rule's `bit`, RULE_BITS).
Each rule keeps its own state (its `State` struct) in `rules`, keyed by rule name.

Serialisation is msgpack of a msgspec struct (arrays, not maps) plus raw sketch bytes.
"""

from __future__ import annotations

from typing import Any, Iterator, get_type_hints

import msgspec
import numpy as np

from detector.engine.bloom import ScalableBloom
from detector.engine.config import DEFAULT_CONFIG, EngineConfig
from detector.engine.fpset import UserSet
from detector.engine.hashing import hash64
from detector.engine.stats import linear_count
from detector.engine.rules import BY_NAME, MASK_RULES, RULE_BITS, RULE_NAMES

RULES = RULE_NAMES  # the rule names, in registry order (detector.engine.rules.RULES holds the rules)
__all__ = ["DEFAULT_CONFIG", "RULES", "RULE_BITS", "EngineConfig", "ExperimentState"]

_FORMAT = 7  # 3: XXH3-64 ids; 4: one flagged fingerprint per user (UserSet); 5: no HLL; 6: per-rule states;
# 7: first-evaluation counts (f_x) and the fraction rule's e-detector


class ExperimentState:
    """Mutable state of one experiment. Create with `ExperimentState.new(key)`.

    Its attributes, in this order, are the checkpoint's fields (`_Snap` is generated from them
    below, `offenders` for `_off`), typed as held in memory: the exact regime keeps `seen`/`enr`
    (and `fset` None), the sketch regime `fset`.
    """

    fmt: int
    experiment: str
    events: int
    first_ts: int | None
    last_ts: int | None
    enr_min_ts: int | None
    enr_max_ts: int | None
    n: int
    s: int
    f_x: int
    variants: dict[str, int]
    variant_none: int
    seen: set[str] | None  # exact regime: eligible users
    enr: dict[str, str | None] | None  # exact regime: enrolled user -> first variant
    fset: UserSet | None  # sketch regime
    _off: dict[str, list[Any]]  # offender records: user -> [first seen ms, variant, rule bitmask]
    offender_count: int
    overflow: ScalableBloom | None
    rule_count: dict[str, int]
    rule_first: dict[str, int]
    rule_last: dict[str, int]
    rule_samples: dict[str, list[str]]
    rules: dict[str, Any]  # rule name -> its State (a msgspec struct of the rule's own type)
    __slots__ = tuple(__annotations__)  # the attributes above, nothing else

    @classmethod
    def new(cls, experiment: str) -> "ExperimentState":
        st = cls.__new__(cls)
        st.fmt = _FORMAT
        st.experiment = experiment
        st.events = 0
        st.first_ts = st.last_ts = st.enr_min_ts = st.enr_max_ts = None
        st.n = st.s = st.f_x = 0
        st.variants = {}
        st.variant_none = 0
        st.seen = set()
        st.enr = {}
        st.fset = None
        st._off = {}
        st.offender_count = 0
        st.overflow = None
        st.rule_count, st.rule_first, st.rule_last, st.rule_samples = {}, {}, {}, {}
        st.rules = {}
        return st

    # -- regime ---------------------------------------------------------------------------
    @property
    def exact(self) -> bool:
        return self.fset is None

    def exact_sets(self) -> tuple[set[str], dict[str, str | None]]:
        """The exact regime's `seen` and `enr` (only while `exact`)."""
        seen, enr = self.seen, self.enr
        assert seen is not None and enr is not None, "not in the exact regime"
        return seen, enr

    def user_set(self) -> UserSet:
        """The sketch regime's user set (only while not `exact`)."""
        fs = self.fset
        assert fs is not None, "not in the sketch regime"
        return fs

    def to_sketch(self, config: EngineConfig = DEFAULT_CONFIG) -> None:
        """Switch from exact sets to the user set (one way)."""
        if self.fset is not None:
            return
        exact_seen, enr = self.exact_sets()
        fs = self.fset = UserSet(config.fingerprint_bits + 1)
        seen = sorted(exact_seen)
        fs.upsert(fs.keys(hash64(seen)), np.array([u in enr for u in seen], bool))
        self.seen = None
        self.enr = None

    def enrolled_lower_bound(self) -> int:
        """A lower bound of distinct enrolled users: exact, else the user set's enrolled count.

        Fingerprint collisions only ever hide a user, so the count is low by ~n^2 / 2^31 on
        average (~0.05% at 1M users), never high.
        """
        return len(self.exact_sets()[1]) if self.fset is None else self.s

    def enrolled_estimate(self) -> float:
        """Distinct enrolled users: exact, else the user set's count corrected for the collisions expected."""
        fs = self.fset
        if fs is None:
            return float(len(self.exact_sets()[1]))
        # S = distinct fingerprints among the enrolled users, in 2^(bits-1) slots (the last bit is the flag)
        return linear_count(self.s, 2.0 ** (fs.bits - 1))

    # -- offenders --------------------------------------------------------------------------
    def offenders(self) -> Iterator[tuple[str, int, str | None, tuple[str, ...]]]:
        """Out-of-target users kept exactly (up to blast_radius_limit): id, first seen ms, variant, rules."""
        mr = MASK_RULES
        for uid, (ts, variant, mask) in self._off.items():
            yield uid, ts, variant, mr[mask]

    # -- serialisation ----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        vals = {f: getattr(self, f) for f in _FIELDS if f != "offenders"}
        fs = self.fset
        if fs is None:
            vals["seen"] = sorted(self.exact_sets()[0])
        else:
            vals["seen"] = None
            vals["fset"] = fs.to_obj()
        vals["offenders"] = self._off
        vals["overflow"] = None if self.overflow is None else self.overflow.to_obj()
        vals["rules"] = {k: msgspec.Raw(_encoder.encode(v)) for k, v in self.rules.items()}
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
        st.rules = {}
        for name, raw in snap.rules.items():
            rule = BY_NAME.get(name)
            if rule is not None and rule.State is not None:  # a rule this build no longer has: dropped
                st.rules[name] = msgspec.msgpack.decode(raw, type=rule.State)
        st.overflow = None if snap.overflow is None else ScalableBloom.from_obj(snap.overflow)
        return st

    def memory_bytes(self) -> int:
        """Approximate resident size of the state (sketch bytes + Python objects)."""
        import sys

        size = 0
        if self.fset is None:
            seen, enr = self.exact_sets()
            size += sys.getsizeof(seen) + sys.getsizeof(enr)
            size += sum(sys.getsizeof(u) for u in seen)
            size += sum(sys.getsizeof(u) for u in enr if u not in seen)
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
        budget (detector.engine.budget), which keeps the lifetime bound; the first-evaluation
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
            seen, enr = self.exact_sets()
            o_seen, o_enr = o.exact_sets()
            seen |= o_seen
            for u, v in o_enr.items():
                enr.setdefault(u, v)
            self.n, self.s = len(seen), len(enr)
            self.f_x = min(self.f_x + o.f_x, self.s)  # disjoint users (user-partitioned streams)
            self.variants, self.variant_none = {}, 0
            for v in enr.values():
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
            fs = self.user_set()
            fs.merge(o.user_set())
            self.n, self.s = len(fs), fs.enrolled_count()
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
        # rule states: each rule merges its own (the sequential tests restart on the merged counts)
        for name in set(self.rules) | set(o.rules):
            rule = BY_NAME.get(name)
            if rule is None or rule.State is None:
                continue
            self.rules[name] = rule.merge_state(self.rules.get(name) or rule.State(),
                                                o.rules.get(name) or rule.State(), self)


# The checkpoint: ExperimentState's attributes in their order, with the wire type where memory
# holds something richer (sets, the user set, the bloom filter, each rule's State struct).
_WIRE_TYPES: dict[str, Any] = {
    "seen": list[str] | None,  # sorted
    "fset": list[Any] | None,  # UserSet.to_obj()
    "_off": dict[str, list[Any]],  # user -> [first seen ms, variant, rule bitmask]
    "overflow": list[Any] | None,  # ScalableBloom.to_obj()
    "rules": dict[str, msgspec.Raw],  # rule name -> its State struct, encoded
}
_hints = get_type_hints(ExperimentState)
_Snap = msgspec.defstruct("_Snap", [("offenders" if f == "_off" else f, _WIRE_TYPES.get(f, _hints[f]))
                                    for f in ExperimentState.__slots__], array_like=True, module=__name__)
_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(_Snap)
_FIELDS = _Snap.__struct_fields__


def _stored(st: ExperimentState, rule: str) -> int:
    bit = RULE_BITS.get(rule, 0)
    return sum(1 for rec in st._off.values() if rec[2] & bit)
