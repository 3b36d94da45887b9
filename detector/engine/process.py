"""One batch of one experiment's events in, findings out; and the state read back as an observation.

`process_batch` is written for throughput: a single shared pass over the events builds the
per-batch distinct users (C-level set/dict operations), membership is decided for the
whole batch at once (exact sets, or one vectorised user-set probe), and the result (a
`rules.Batch`) goes to each rule the declaration activates (`detector.engine.rules.RULES`).
The sequential statistics are evaluated once per batch on distinct counts (one "look" per
batch; the tests are anytime-valid, so the look schedule does not matter). Rules that judge
single events (allowlist, segments, window) still record the exact timestamp of the first
offending event.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Sequence
from itertools import compress
from operator import attrgetter
from typing import Any, cast

import msgspec
import numpy as np

from detector.engine.config import DEFAULT_CONFIG, EngineConfig
from detector.engine.fpset import UserSet
from detector.engine.hashing import hash64, hash64_list
from detector.engine.rules import RULES, Batch, Finding, Plan, Rule, RuleState
from detector.engine.state import ExperimentState
from detector.events import Assignment
from detector.registration.compiled import CompiledRegistration

_variant_of = attrgetter("variant")
_ts_of = attrgetter("ts")
_enrolled_of = attrgetter("enrolled")
_user_of = attrgetter("user_id")


# ---------------------------------------------------------------------------------------
class Observed(msgspec.Struct):
    """What the state says was observed (distinct users, variant split, times)."""

    enrolled_users: int = 0
    eligible_users: int = 0
    observed_fraction: float | None = None  # enrolled / eligible; None without eligible users
    enrolled_users_estimate: float = 0.0
    enrolled_users_lower_bound: int = 0
    variants: dict[str, int] = {}  # enrolled users by first variant; "(none)": enrolled without one
    events: int = 0
    first_event_at: int | None = None  # epoch ms
    last_event_at: int | None = None
    counting: str = "exact"  # "exact" | "sketch"
    out_of_target_users: int = 0
    # users enrolled at their first evaluation: what the fraction rule judges (README "Statistics")
    first_evaluation_enrolled_users: int = 0
    first_evaluation_fraction: float | None = None


class Declared(msgspec.Struct):
    """The declaration as the observation shows it (registered False: no registration)."""

    registered: bool = False
    owner: str | None = None
    starts_at: int | None = None
    ends_at: int | None = None
    allowlist: list[str] | None = None
    max_users: int | None = None
    fraction: float | None = None
    tolerance: float | None = None
    segments: dict[str, list[str]] | None = None
    variants: dict[str, float] | None = None
    alpha: float | None = None
    severity: str | None = None


class Observation(msgspec.Struct):
    """`observe()`: observed vs declared and the state of each active rule."""

    experiment: str
    observed: Observed = msgspec.field(default_factory=Observed)
    expected: Declared = msgspec.field(default_factory=Declared)
    rules: dict[str, RuleState] = {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (rule fields left at None omitted)."""
        d: dict[str, Any] = msgspec.to_builtins(self)
        return d


def declared(exp: CompiledRegistration | None) -> Declared:
    """The declaration as plain data (allowlist as a sorted list)."""
    if exp is None:
        return Declared()
    return Declared(
        registered=True,
        owner=exp.owner,
        starts_at=exp.starts_at,
        ends_at=exp.ends_at,
        allowlist=sorted(exp.allowlist) if exp.allowlist is not None else None,
        max_users=exp.max_users,
        fraction=exp.fraction,
        tolerance=exp.tolerance,
        segments={k: sorted(v) for k, v in exp.segments.items()} if exp.segments else None,
        variants=dict(exp.variants) if exp.variants else None,
        alpha=exp.alpha,
        severity=exp.severity,
    )


# ---- per-declaration plans: each active rule's derived values, cached by the declaration's identity ----
class _Plans:
    __slots__ = ("exp", "config", "active")

    def __init__(self, exp: CompiledRegistration | None, config: EngineConfig) -> None:
        self.exp = exp
        self.config = config
        self.active: tuple[tuple[Rule, Plan], ...] = tuple(
            (r, r.prepare(exp, config)) for r in RULES if r.active(exp))


_PLANS: dict[tuple[int, int], _Plans] = {}


def _plans(exp: CompiledRegistration | None, config: EngineConfig) -> _Plans:
    key = (id(exp), id(config))
    p = _PLANS.get(key)
    if p is None or p.exp is not exp or p.config is not config:
        if len(_PLANS) >= 8192:
            _PLANS.clear()
        p = _PLANS[key] = _Plans(exp, config)
    return p


# ---------------------------------------------------------------------------------------
def process_batch(state: ExperimentState, registration: CompiledRegistration | None,
                  events: Sequence[Assignment], config: EngineConfig = DEFAULT_CONFIG) -> list[Finding]:
    """Fold one batch (one experiment, input order) into `state`; return the findings it triggers."""
    if not events:
        return []
    st = state
    nev = len(events)

    # ---- one pass: timestamps, first enrolled event per user ----------------------------
    enr_events: list[Assignment]
    enr_first: dict[str, Assignment]
    batch_users: Collection[str]
    if nev == 1:
        e0 = events[0]
        bmin = bmax = e0.ts
        if e0.enrolled:
            enr_events = [e0]
            enr_first = {e0.user_id: e0}
            batch_users = enr_first.keys()
        else:
            enr_events = []
            enr_first = {}
            batch_users = (e0.user_id,)
    else:
        # C-level loops (map, compress, setdefault): this runs for every event.
        tss = list(map(_ts_of, events))
        bmin = min(tss)
        bmax = max(tss)
        enr_events = list(compress(events, map(_enrolled_of, events)))
        enr_first = {}  # user -> their first enrolled event, in batch order
        deque(map(enr_first.setdefault, map(_user_of, enr_events), enr_events), maxlen=0)
        if len(enr_events) == nev:
            batch_users = enr_first.keys()
        else:  # each user's first event in the batch: their first evaluation if they are new
            first_any: dict[str, Assignment] = {}
            deque(map(first_any.setdefault, map(_user_of, events), events), maxlen=0)
            batch_users = first_any.keys()
    first_event_ever = st.events == 0
    st.events += nev
    if st.first_ts is None or bmin < st.first_ts:
        st.first_ts = bmin
    if st.last_ts is None or bmax > st.last_ts:
        st.last_ts = bmax
    if enr_events:
        if len(enr_events) < nev:
            etmin = min(e.ts for e in enr_events)
            etmax = max(e.ts for e in enr_events)
        else:
            etmin, etmax = bmin, bmax
        if st.enr_min_ts is None or etmin < st.enr_min_ts:
            st.enr_min_ts = etmin
        if st.enr_max_ts is None or etmax > st.enr_max_ts:
            st.enr_max_ts = etmax

    # ---- distinct users -----------------------------------------------------------------
    # dx: new users whose FIRST evaluation is enrolled (the fraction rule's unit); ds: users
    # enrolled for the first time (new, or seen not enrolled before: max_users, variants).
    mixed = 0 < len(enr_events) < nev
    fs = st.fset
    if fs is None:
        seen = st.seen
        enr_map = st.enr
        assert seen is not None and enr_map is not None  # the exact regime
        before = len(seen)
        ret_enr = len(enr_map.keys() & batch_users) if enr_map else 0
        new_users = [u for u in batch_users if u not in seen] if mixed else None
        seen.update(batch_users)
        dn = len(seen) - before
        new_enr = [u for u in enr_first if u not in enr_map]
        enr_map.update(zip(new_enr, map(_variant_of, map(enr_first.__getitem__, new_enr))))
        if len(seen) > config.exact_limit:
            st.to_sketch(config)
    else:
        dn, new_enr, new_users = _sketch_membership(fs, batch_users, enr_first, config, mixed)
        ret_enr = fs.hits_enrolled
    ds = len(new_enr)
    if not enr_events:
        dx = 0
    elif mixed:
        assert new_users is not None
        dx = sum(1 for u in new_users if first_any[u].enrolled)
    else:
        dx = dn
    # the returning-users rule's trials: the batch's users not enrolled before it, less the new
    # users enrolled at their first evaluation (the fraction rule's); tx of them enrolled now
    tn = len(batch_users) - ret_enr - dx
    tx = min(ds - dx, tn) if ds > dx else 0
    st.n += dn
    st.s += ds
    st.f_x += dx
    batch_vc: dict[str, int] = {}
    if ds:
        counts: dict[str | None, int] = {}
        for v in map(_variant_of, map(enr_first.__getitem__, new_enr)):
            counts[v] = counts.get(v, 0) + 1
        st.variant_none += counts.pop(None, 0)
        batch_vc = cast("dict[str, int]", counts)  # None popped
        vc = st.variants
        for v, c in batch_vc.items():
            vc[v] = vc.get(v, 0) + c

    if not enr_first and not dn and not first_event_ever and not tn:
        return []  # nothing enrolled, no new eligible user, no returning trial: no rule can change

    # ---- the rules ----------------------------------------------------------------------
    batch = Batch(events, enr_events, enr_first, new_enr, dn, ds, batch_vc, bmin, bmax, first_event_ever, dx,
                  tn, tx)
    findings: list[Finding] = []
    for rule, plan in _plans(registration, config).active:
        f = rule.judge(st, batch, plan)
        if f is not None:
            findings.append(f)
    return findings


def _sketch_membership(fs: UserSet, batch_users: Collection[str], enr_first: dict[str, Assignment], config: EngineConfig,
                       want_new: bool = False) -> tuple[int, list[str], list[str] | None]:
    """New eligible users (count), new enrolled users (ids, batch order) and, if `want_new`,
    the new users' ids (else None), against the user set.

    One entry per user with an enrolled flag: one hash and one probe per distinct user of the
    batch. Few users: hashed and probed with plain Python and a handful of numpy calls; else
    vectorised. Same answers either way.
    """
    cand = list(batch_users)
    all_enr = batch_users is enr_first.keys() if enr_first else False
    flags = [True] * len(cand) if all_enr else [u in enr_first for u in cand]
    new_user: list[bool] | np.ndarray
    if len(cand) <= config.small_batch_keys:
        new_user, newly = fs.upsert_small(fs.keys_list(hash64_list(cand)), flags)
        dn = sum(new_user)
    else:
        new_user, ne = fs.upsert(fs.keys(hash64(cand)), np.array(flags, bool))
        dn = int(np.count_nonzero(new_user))
        newly = ne.tolist()
    new_users = list(compress(cand, new_user)) if want_new else None
    new = list(compress(cand, newly))
    if all_enr or len(new) <= 1:
        return dn, new, new_users
    fresh = set(new)
    return dn, [u for u in enr_first if u in fresh], new_users  # in batch order


# ---------------------------------------------------------------------------------------
def rule_breaches(state: ExperimentState, registration: CompiledRegistration | None,
                  config: EngineConfig = DEFAULT_CONFIG) -> dict[str, bool]:
    """Re-judge the current state under a (possibly new) declaration; rule -> breached.

    Each active rule's `breached` (exact where the state allows; the statistical rules as
    their alarm logic leaves them, re-judged on the users since their last alarm).
    """
    return {r.name: r.breached(state, registration, config) for r in RULES if r.active(registration)}


def observe(state: ExperimentState, registration: CompiledRegistration | None,
            config: EngineConfig = DEFAULT_CONFIG) -> Observation:
    """Observed vs expected and the state of each active rule."""
    st = state
    exp = registration
    variants = dict(st.variants)
    if st.variant_none:
        variants["(none)"] = st.variant_none
    observed = Observed(
        enrolled_users=st.s,
        eligible_users=st.n,
        observed_fraction=(st.s / st.n) if st.n else None,
        enrolled_users_estimate=st.enrolled_estimate(),
        enrolled_users_lower_bound=st.enrolled_lower_bound(),
        variants=variants,
        events=st.events,
        first_event_at=st.first_ts,
        last_event_at=st.last_ts,
        counting="exact" if st.fset is None else "sketch",
        out_of_target_users=st.offender_count,
        first_evaluation_enrolled_users=st.f_x,
        first_evaluation_fraction=(st.f_x / st.n) if st.n else None,
    )
    rules = {r.name: r.observe(st, exp, config, r.breached(st, exp, config)) for r in RULES if r.active(exp)}
    return Observation(experiment=st.experiment, observed=observed, expected=declared(exp), rules=rules)
