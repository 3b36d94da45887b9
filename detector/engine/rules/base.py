"""What every rule shares: the prepared batch, the `Rule` interface, findings and rule states.

A rule is one module under `detector/engine/rules/` holding one `Rule` subclass; the registry
(`detector/engine/rules/__init__.py`) lists them. `process_batch` (detector/engine/process.py)
makes one shared pass over a batch (timestamps, distinct users, first enrolled event per user,
the user-set upsert) into a `Batch`, then asks each rule the declaration activates to `judge` it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

import msgspec
import numpy as np

from detector.engine import budget
from detector.engine.bloom import ScalableBloom
from detector.engine.config import EngineConfig
from detector.engine.hashing import hash64, mix64
from detector.events import Assignment
from detector.registration.compiled import CompiledRegistration

if TYPE_CHECKING:
    from detector.engine.state import ExperimentState

_variant_of = attrgetter("variant")

FIRING: Final = "firing"  # the one spelling of a rule in breach (observe(), metrics, API)
OK: Final = "ok"


@dataclass(frozen=True)
class Finding:
    experiment: str
    rule: str
    severity: str
    observed: dict[str, Any]
    expected: dict[str, Any]
    first_offending_event_at: int  # epoch ms
    detected_at: int  # epoch ms: ts of the event at which the rule fired / was updated
    blast_radius: int  # out-of-target users (count)
    sample_ids: tuple[str, ...] = ()
    statistic: float | None = None
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment, "rule": self.rule, "severity": self.severity,
            "observed": dict(self.observed), "expected": dict(self.expected),
            "first_offending_event_at": self.first_offending_event_at, "detected_at": self.detected_at,
            "blast_radius": self.blast_radius, "sample_ids": list(self.sample_ids),
            "statistic": self.statistic, "summary": self.summary,
        }


class RuleState(msgspec.Struct, omit_defaults=True):
    """One rule's state as `observe()` reports it (fields left at None are omitted in JSON)."""

    state: Literal["firing", "ok"]
    statistic: float | None = None
    threshold: float | None = None
    offenders: int = 0
    first_offending_event_at: int | None = None
    last_offending_event_at: int | None = None
    alarms: int | None = None
    segment: int | None = None  # statistical rules: the running segment of the alpha budget
    missing_attributes: int | None = None  # segment_breach: enrolled events without attributes


class Batch:
    """One experiment's batch after the shared pass (read-only for the rules).

    events: the batch in input order; enr_events: its enrolled events; enr_first: user ->
    first enrolled event of the batch (batch order); new_enr: users enrolled for the first time
    ever (batch order); dn / ds: new eligible / enrolled distinct users; new_variants: variant
    -> users among new_enr (None excluded); bmin / bmax: event time span; dx: new users whose
    first evaluation is enrolled (the fraction rule's trials: dn, of which dx enrolled); tn: the
    batch's users not enrolled before it, less those dx (the returning-users rule's trials), tx
    of them enrolled in this batch.
    """

    __slots__ = ("events", "enr_events", "enr_first", "new_enr", "dn", "ds", "new_variants",
                 "bmin", "bmax", "first_event_ever", "_variants", "dx",
                 "tn", "tx")

    def __init__(self, events: Sequence[Assignment], enr_events: list[Assignment],
                 enr_first: dict[str, Assignment], new_enr: list[str], dn: int, ds: int,
                 new_variants: dict[str, int], bmin: int, bmax: int, first_event_ever: bool,
                 dx: int = 0, tn: int = 0, tx: int = 0) -> None:
        self.dx = dx
        self.tn = tn
        self.tx = tx
        self.events = events
        self.enr_events = enr_events
        self.enr_first = enr_first
        self.new_enr = new_enr
        self.dn = dn
        self.ds = ds
        self.new_variants = new_variants
        self.bmin = bmin
        self.bmax = bmax
        self.first_event_ever = first_event_ever
        self._variants: set[str | None] | None = None

    def variants_seen(self) -> set[str | None]:
        """The variants of the batch's enrolled events (None: enrolled without one); computed once."""
        v = self._variants
        if v is None:
            v = self._variants = set(map(_variant_of, self.enr_events))
        return v


class Plan:
    """A rule's view of one declaration: derived constants computed once per declaration object."""

    __slots__ = ("rule", "exp", "config", "_expected")

    def __init__(self, rule: "Rule", exp: CompiledRegistration | None, config: EngineConfig) -> None:
        self.rule = rule
        self.exp = exp
        self.config = config
        self._expected: dict[str, Any] | None = None

    def expected(self) -> dict[str, Any]:
        """The declaration as this rule reads it; each finding gets its own copy."""
        if self._expected is None:
            self._expected = self.rule.expected(self.exp)
        copy: dict[str, Any] = _copy(self._expected)
        return copy


def _copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return list(d)
    return d


class Rule:
    """One rule. Subclasses set `name` (the finding name), `bit` (its bit in offender records;
    0 = it keeps none) and `State` (its checkpointed per-experiment state, or None), and
    implement the methods below. Instances are stateless singletons listed in the registry."""

    name: ClassVar[str]
    bit: ClassVar[int] = 0
    State: ClassVar[type[msgspec.Struct] | None] = None
    plan_type: ClassVar[type[Plan]] = Plan

    # -- which declarations switch it on, what they expect -------------------------------------
    def active(self, exp: CompiledRegistration | None) -> bool:
        raise NotImplementedError

    def expected(self, exp: CompiledRegistration | None) -> dict[str, Any]:
        """The declared side of this rule, JSON-able (findings' `expected`, the API's view)."""
        raise NotImplementedError

    def prepare(self, exp: CompiledRegistration | None, config: EngineConfig) -> Plan:
        return self.plan_type(self, exp, config)

    # -- the hot path ---------------------------------------------------------------------------
    def judge(self, st: "ExperimentState", batch: Batch, plan: Any) -> Finding | None:
        """Fold the prepared batch into this rule's state; a finding when it has new evidence."""
        raise NotImplementedError

    # -- re-judging the current state ------------------------------------------------------------
    def breached(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig) -> bool:
        """Is the current state in breach under `exp` (possibly a newer declaration)?"""
        raise NotImplementedError

    def observe(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig,
                breached: bool) -> RuleState:
        count = st.rule_count.get(self.name, 0)
        return RuleState(state=FIRING if breached else OK, statistic=float(count), threshold=0.0,
                         offenders=count, first_offending_event_at=st.rule_first.get(self.name),
                         last_offending_event_at=st.rule_last.get(self.name))

    def sequential_state(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig,
                         breached: bool, rs: Any) -> RuleState:
        """`observe()` of a sequential-test rule whose own state `rs` has `stat`, `seg` and `alarms`:
        its statistic against the threshold of its running budget segment."""
        alpha = exp.alpha if exp is not None and exp.alpha is not None else config.alpha
        return RuleState(state=FIRING if breached else OK, statistic=rs.stat,
                         threshold=budget.log_threshold(alpha, self.name, rs.seg),
                         offenders=st.rule_count.get(self.name, 0),
                         first_offending_event_at=st.rule_first.get(self.name),
                         last_offending_event_at=st.rule_last.get(self.name), alarms=rs.alarms, segment=rs.seg)

    def still_holds(self, st: Any, exp: CompiledRegistration | None) -> Callable[[str], bool]:
        """For the blast radius: does a stored record of this rule still hold for user `uid`?"""
        return _never

    # -- its own state ----------------------------------------------------------------------------
    def state(self, st: "ExperimentState") -> Any:
        s = st.rules.get(self.name)
        if s is None:
            state_type = self.State
            assert state_type is not None, f"{self.name} keeps no state"
            s = st.rules[self.name] = state_type()
        return s

    def merge_state(self, mine: Any, other: Any, merged: "ExperimentState") -> Any:
        """The rule state of a merge of two states (default: start over on the merged counts)."""
        return self.State() if self.State is not None else None

    # -- helpers for subclasses --------------------------------------------------------------------
    def finding(self, st: "ExperimentState", plan: Plan, new: Sized, detected_at: int,
                observed_extra: dict[str, Any] | None = None, statistic: float | None = None, summary: str = "") -> Finding:
        """A finding of an offender-recording rule: counts, first offence, samples from the state."""
        name = self.name
        count = st.rule_count.get(name, 0)
        observed = {
            "offenders": count,
            "new_offenders": len(new),
            "enrolled_users": st.s,
            "eligible_users": st.n,
            "last_offending_event_at": st.rule_last.get(name),
        }
        if observed_extra:
            observed.update(observed_extra)
        exp = plan.exp
        return Finding(
            experiment=st.experiment,
            rule=name,
            severity=plan.config.unregistered_severity if exp is None else exp.severity,
            observed=observed,
            expected=plan.expected(),
            first_offending_event_at=st.rule_first.get(name, detected_at),
            detected_at=detected_at,
            blast_radius=count,
            sample_ids=tuple(st.rule_samples.get(name, ())),
            statistic=statistic if statistic is not None else float(count),
            summary=summary,
        )

    def record(self, st: "ExperimentState", evs: Iterable[Assignment], config: EngineConfig) -> list[tuple[str, int]]:
        return record_offenders(st, self.name, self.bit, evs, config)


NO_VARIANT = "(none)"  # how a missing variant is named where a name is needed (observe(), rule states)


class VariantState(msgspec.Struct, array_like=True):
    by_variant: dict[str, int] = {}  # offending users by the variant they were seen in (bounded)


class VariantRule(Rule):
    """A rule on the variant of each enrolled event: subclasses say which variants offend under a
    declaration (`offending`). Every enrolled event is judged, so a returning user seen in an
    offending variant is caught too; a batch whose variants are all fine costs one set check."""

    State = VariantState
    max_variants: ClassVar[int] = 64  # distinct offending variant names kept in the state

    def offending(self, exp: CompiledRegistration, variants: Iterable[str | None]) -> set[str | None]:
        raise NotImplementedError

    def describe(self, st: "ExperimentState", plan: Plan, by_variant: dict[str, int]) -> str:
        raise NotImplementedError

    def judge(self, st: "ExperimentState", batch: Batch, plan: Plan) -> Finding | None:
        if not batch.enr_events:
            return None
        exp = plan.exp
        assert exp is not None  # active only under a registration
        bad = self.offending(exp, batch.variants_seen())
        if not bad:
            return None
        firsts: dict[str, Assignment] = {}
        for e in batch.enr_events:
            if e.variant in bad and e.user_id not in firsts:
                firsts[e.user_id] = e
        new = self.record(st, firsts.values(), plan.config)
        if not new:
            return None
        by_variant = self.state(st).by_variant
        for u, _ in new:
            v = firsts[u].variant
            key = NO_VARIANT if v is None else v
            if key in by_variant or len(by_variant) < self.max_variants:
                by_variant[key] = by_variant.get(key, 0) + 1
        return self.finding(st, plan, new, tmin(new), observed_extra={"offending_variants": dict(by_variant)},
                            summary=self.describe(st, plan, by_variant))

    def breached(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig) -> bool:
        rs = st.rules.get(self.name)
        if rs is None or exp is None:
            return False
        return bool(self.offending(exp, (None if k == NO_VARIANT else k for k in rs.by_variant)))

    def still_holds(self, st: Any, exp: CompiledRegistration | None) -> Callable[[str], bool]:
        """On the variant of the user's record (the variant they were first recorded in)."""
        if exp is None or not self.active(exp):
            return _never
        offs = st._off
        return lambda uid: uid in offs and bool(self.offending(exp, (offs[uid][1],)))


def _never(uid: str) -> bool:
    return False


def _always(uid: str) -> bool:
    return True


def constant(value: bool) -> Callable[[str], bool]:
    return _always if value else _never


def users(n: int, what: str = "user") -> str:
    """"1 enrolled user", "3 enrolled users": summaries are read by people (and name no user id)."""
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def tmin(new: list[tuple[str, int]]) -> int:
    return new[0][1] if len(new) == 1 else min(t for _, t in new)


_OFFENDER_SALT = np.uint64(0x6A09E667F3BCC909)


def rule_salt(bit: int) -> np.uint64:
    """The rule's key space in the overflow filter (fixed: it keys checkpointed filters)."""
    return np.uint64((0xBB67AE8584CAA73B * (bit + 1)) & 0xFFFFFFFFFFFFFFFF)


def record_offenders(st: "ExperimentState", rule: str, bit: int, evs: Iterable[Assignment],
                     config: EngineConfig) -> list[tuple[str, int]]:
    """Record offenders (events of distinct users) for `rule`; returns the new ones (uid, ts) in order."""
    offs = st._off
    get = offs.get
    room = config.blast_radius_limit - len(offs)
    new: list[tuple[str, int]] = []
    append = new.append
    overflow = []
    added = 0
    for e in evs:
        uid = e.user_id
        rec = get(uid)
        if rec is None:
            if room > 0:
                ts = e.ts
                offs[uid] = [ts, e.variant, bit]
                room -= 1
                added += 1
                append((uid, ts))
            else:
                overflow.append(e)
        elif not rec[2] & bit:
            rec[2] |= bit
            ts = e.ts
            if ts < rec[0]:
                rec[0] = ts
            append((uid, ts))
    st.offender_count += added
    if overflow:  # beyond the id bound: count distinct users with a seen-before filter
        if st.overflow is None:
            st.overflow = ScalableBloom(1024)
        # One id hash, two derived key spaces (any offence; this rule) in the same filter.
        h = hash64([e.user_id for e in overflow])
        user_new = st.overflow.add_new(mix64(h ^ _OFFENDER_SALT))
        st.offender_count += int(user_new.sum())
        rule_new = st.overflow.add_new(mix64(h ^ rule_salt(bit)))
        new.extend((e.user_id, e.ts) for e, fresh in zip(overflow, rule_new.tolist()) if fresh)
    if new:
        note_offences(st, rule, new, config)
    return new


def note_offences(st: "ExperimentState", rule: str, new: list[tuple[str, int]], config: EngineConfig) -> None:
    """Count new offending users (uid, ts) of `rule`: count, first/last time, bounded sample ids."""
    st.rule_count[rule] = st.rule_count.get(rule, 0) + len(new)
    if len(new) == 1:
        lo = hi = new[0][1]
    else:
        tss = [t for _, t in new]
        lo = min(tss)
        hi = max(tss)
    rf = st.rule_first.get(rule)
    if rf is None or lo < rf:
        st.rule_first[rule] = lo
    rl = st.rule_last.get(rule)
    if rl is None or hi > rl:
        st.rule_last[rule] = hi
    samples = st.rule_samples.get(rule)
    if samples is None:
        samples = st.rule_samples[rule] = []
    room = config.sample_ids_limit - len(samples)
    if room > 0:
        samples.extend(u for u, _ in new[:room])


def stored_records(st: Any, bit: int) -> int:
    """Offender records carrying `bit`."""
    return sum(1 for rec in st._off.values() if rec[2] & bit)
