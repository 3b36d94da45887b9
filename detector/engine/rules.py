"""The rules: one batch of one experiment's events in, findings out.

`process_batch` is written for throughput: a single pass over the events builds the
per-batch distinct users (C-level set/dict operations), membership is decided for the
whole batch at once (exact sets, or one vectorised Bloom probe), and the sequential
statistics are evaluated once per batch on distinct counts (one "look" per batch;
the tests are anytime-valid, so the look schedule does not matter). Rules that judge
single events (allowlist, segments, window) still record the exact timestamp of the
first offending event.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from itertools import compress
from operator import attrgetter
from typing import Sequence

import numpy as np

from detector.engine import budget, stats
from detector.engine.bloom import ScalableBloom
from detector.engine.hashing import hash64, hash64_list, mix64
from detector.engine.state import DEFAULT_CONFIG, RULE_BITS, EngineConfig, ExperimentState
from detector.events import Assignment
from detector.expectations import Expectation

_variant_of = attrgetter("variant")
_ts_of = attrgetter("ts")
_enrolled_of = attrgetter("enrolled")
_user_of = attrgetter("user_id")

_INF = float("inf")


@dataclass(frozen=True)
class Finding:
    experiment: str
    rule: str
    severity: str
    observed: dict
    expected: dict
    first_offending_event_at: int  # epoch ms
    detected_at: int  # epoch ms: ts of the event at which the rule fired / was updated
    blast_radius: int  # out-of-target users (count)
    sample_ids: tuple[str, ...] = ()
    statistic: float | None = None
    summary: str = ""

    def to_dict(self) -> dict:
        return {
            "experiment": self.experiment, "rule": self.rule, "severity": self.severity,
            "observed": dict(self.observed), "expected": dict(self.expected),
            "first_offending_event_at": self.first_offending_event_at, "detected_at": self.detected_at,
            "blast_radius": self.blast_radius, "sample_ids": list(self.sample_ids),
            "statistic": self.statistic, "summary": self.summary,
        }


# ---------------------------------------------------------------------------------------
def expected_dict(exp: Expectation | None) -> dict:
    """The declaration as JSON-able data (allowlist as a sorted list)."""
    if exp is None:
        return {"registered": False}
    d = {
        "registered": True,
        "starts_at": exp.starts_at,
        "ends_at": exp.ends_at,
        "allowlist": sorted(exp.allowlist) if exp.allowlist is not None else None,
        "max_users": exp.max_users,
        "fraction": exp.fraction,
        "tolerance": exp.tolerance,
        "segments": {k: sorted(v) for k, v in exp.segments.items()} if exp.segments else None,
        "variants": dict(exp.variants) if exp.variants else None,
        "alpha": exp.alpha,
        "severity": exp.severity,
    }
    return d


def _rule_expected(rule: str, exp: Expectation | None) -> dict:
    if exp is None:
        return {"registered": False}
    if rule == "allowlist_breach":
        al = sorted(exp.allowlist or ())
        return {"allowlist": al[:100], "allowlist_size": len(al)}
    if rule == "max_users_exceeded":
        return {"max_users": exp.max_users}
    if rule == "fraction_exceeded":
        return {"fraction": exp.fraction, "tolerance": exp.tolerance, "alpha": exp.alpha,
                "unenrolled_logged": exp.unenrolled_logged,
                "alert_above": exp.fraction * (1 + exp.tolerance)}
    if rule == "segment_breach":
        return {"segments": {k: sorted(v) for k, v in (exp.segments or {}).items()}}
    if rule == "outside_window":
        return {"starts_at": exp.starts_at, "ends_at": exp.ends_at}
    if rule == "sample_ratio_mismatch":
        return {"variants": dict(exp.variants or {}), "alpha": exp.alpha}
    return {}


# ---- per-expectation derived values, cached by the expectation object's identity -----------
class _Plan:
    __slots__ = ("exp", "config", "allowlist", "segs", "window", "max_users", "p0", "alpha", "alts",
                 "srm_key", "srm_probs", "srm_consts", "expected")

    def __init__(self, exp: Expectation, config: EngineConfig) -> None:
        self.exp = exp
        self.config = config
        self.allowlist = exp.allowlist
        self.segs = tuple(exp.segments.items()) if exp.segments else None
        if exp.starts_at is not None or exp.ends_at is not None:
            self.window = _window(exp, config)
        else:
            self.window = None
        self.max_users = exp.max_users
        self.alpha = exp.alpha if exp.alpha is not None else config.alpha
        self.p0 = self.alts = None
        if exp.fraction is not None:
            p0 = self.p0 = stats.effective_p0(exp.fraction, exp.tolerance, exp.unenrolled_logged)
            if 0.0 < p0 < 1.0:
                self.alts = stats.fraction_alternatives(p0, config.fraction_ratios)
        self.srm_key = self.srm_probs = self.srm_consts = None
        if exp.variants:
            key = self.srm_key = _srm_key(exp)
            probs = [p for _, p in key]
            tot = sum(probs)
            probs = self.srm_probs = [p / tot for p in probs]
            consts = []
            if probs:  # the arithmetic of stats.srm_log_bf, with its constants hoisted
                for k in config.srm_concentrations:
                    per = []
                    a_sum = 0.0
                    for p in probs:
                        a = k * p
                        per.append((a, _lgamma(a), math.log(p)))
                        a_sum += a
                    consts.append((tuple(per), a_sum, _lgamma(a_sum)))
            self.srm_consts = tuple(consts)
        self.expected: dict[str, dict] = {}

    def rule_expected(self, rule: str) -> dict:
        d = self.expected.get(rule)
        if d is None:
            d = self.expected[rule] = _rule_expected(rule, self.exp)
        return _copy(d)


def _window(exp: Expectation, config: EngineConfig) -> tuple[float, float]:
    """[lo, hi) of the declared window widened by the accepted clock skew at both edges."""
    g = config.window_grace_ms
    return (-_INF if exp.starts_at is None else exp.starts_at - g,
            _INF if exp.ends_at is None else exp.ends_at + g)


def _copy(d):
    """Findings get their own copy of the cached declaration data (lists and dicts)."""
    if isinstance(d, dict):
        return {k: _copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return list(d)
    return d


_lgamma = math.lgamma
_OFFENDER_SALT = np.uint64(0x6A09E667F3BCC909)
# Per-rule salts (fixed: they key checkpointed filters), derived from the rule's bit.
_RULE_SALTS = {rule: np.uint64((0xBB67AE8584CAA73B * (bit + 1)) & 0xFFFFFFFFFFFFFFFF) for rule, bit in RULE_BITS.items()}
_PLANS: dict[tuple[int, int], _Plan] = {}


def _plan(exp: Expectation, config: EngineConfig) -> _Plan:
    key = (id(exp), id(config))
    p = _PLANS.get(key)
    if p is None or p.exp is not exp or p.config is not config:
        if len(_PLANS) >= 8192:
            _PLANS.clear()
        p = _PLANS[key] = _Plan(exp, config)
    return p


def _srm_log_mixture(counts, consts) -> float:
    """stats.srm_log_mixture(counts, probs, ks) with per-(probs, k) constants precomputed (same floats)."""
    ls = []
    for per, a_sum, lg_sum in consts:
        acc = 0.0
        n = 0
        for x, (a, lga, lp) in zip(counts, per):
            acc += _lgamma(a + x) - lga - x * lp
            n += x
        ls.append(acc + lg_sum - _lgamma(a_sum + n))
    m = max(ls)
    return m + math.log(sum(math.exp(x - m) for x in ls) / len(ls))


def _record(st: ExperimentState, rule: str, evs, config: EngineConfig) -> list[tuple[str, int]]:
    """Record offenders (events of distinct users) for `rule`; returns the new ones (uid, ts) in order."""
    bit = RULE_BITS[rule]
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
        rule_new = st.overflow.add_new(mix64(h ^ _RULE_SALTS[rule]))
        new.extend((e.user_id, e.ts) for e, fresh in zip(overflow, rule_new.tolist()) if fresh)
    if new:
        st.rule_count[rule] = st.rule_count.get(rule, 0) + len(new)
        if len(new) == 1:
            tmin = tmax = new[0][1]
        else:
            tss = [t for _, t in new]
            tmin = min(tss)
            tmax = max(tss)
        rf = st.rule_first.get(rule)
        if rf is None or tmin < rf:
            st.rule_first[rule] = tmin
        rl = st.rule_last.get(rule)
        if rl is None or tmax > rl:
            st.rule_last[rule] = tmax
        samples = st.rule_samples.get(rule)
        if samples is None:
            samples = st.rule_samples[rule] = []
        room = config.sample_ids_limit - len(samples)
        if room > 0:
            samples.extend(u for u, _ in new[:room])
    return new


def _finding(st, exp, rule, new, detected_at, config, observed_extra=None, statistic=None,
             summary="", plan=None) -> "Finding":
    count = st.rule_count.get(rule, 0)
    observed = {
        "offenders": count,
        "new_offenders": len(new),
        "enrolled_users": st.s,
        "eligible_users": st.n,
        "last_offending_event_at": st.rule_last.get(rule),
    }
    if observed_extra:
        observed.update(observed_extra)
    return Finding(
        experiment=st.experiment,
        rule=rule,
        severity=config.unregistered_severity if exp is None else exp.severity,
        observed=observed,
        expected=plan.rule_expected(rule) if plan is not None else _rule_expected(rule, exp),
        first_offending_event_at=st.rule_first.get(rule, detected_at),
        detected_at=detected_at,
        blast_radius=count,
        sample_ids=tuple(st.rule_samples.get(rule, ())),
        statistic=statistic if statistic is not None else float(count),
        summary=summary,
    )


def _tmin(new) -> int:
    return new[0][1] if len(new) == 1 else min(t for _, t in new)


# ---------------------------------------------------------------------------------------
def process_batch(state: ExperimentState, expectation: Expectation | None,
                  events: Sequence[Assignment], config: EngineConfig = DEFAULT_CONFIG) -> list[Finding]:
    """Fold one batch (one experiment, input order) into `state`; return the findings it triggers."""
    if not events:
        return []
    st = state
    exp = expectation
    findings: list[Finding] = []
    nev = len(events)

    # ---- one pass: timestamps, first enrolled event per user ----------------------------
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
            first_any: dict = {}
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
        before = len(seen)
        new_users = [u for u in batch_users if u not in seen] if mixed else None
        seen.update(batch_users)
        dn = len(seen) - before
        enr_map = st.enr
        new_enr = [u for u in enr_first if u not in enr_map]
        enr_map.update(zip(new_enr, map(_variant_of, map(enr_first.__getitem__, new_enr))))
    else:
        dn, new_enr, new_users = _sketch_membership(fs, batch_users, enr_first, config, mixed)
    ds = len(new_enr)
    if not enr_events:
        dx = 0
    elif mixed:
        dx = sum(1 for u in new_users if first_any[u].enrolled)
    else:
        dx = dn
    st.n += dn
    st.s += ds
    st.f_x += dx
    batch_vc: dict[str, int] = {}
    if ds:
        for v in map(_variant_of, map(enr_first.__getitem__, new_enr)):
            batch_vc[v] = batch_vc.get(v, 0) + 1
        st.variant_none += batch_vc.pop(None, 0)
        vc = st.variants
        for v, c in batch_vc.items():
            vc[v] = vc.get(v, 0) + c
    if fs is None and len(st.seen) > config.exact_limit:
        st.to_sketch(config)

    # ---- unregistered -------------------------------------------------------------------
    if exp is None:
        if dn or first_event_ever:
            new = _record(st, "unregistered", [enr_first[u] for u in new_enr], config) if new_enr else []
            if "unregistered" not in st.rule_first:
                st.rule_first["unregistered"] = bmin
            st.rule_last["unregistered"] = max(st.rule_last.get("unregistered", bmax), bmax)
            det = _tmin(new) if new else events[0].ts
            st.un_reported = st.n
            findings.append(_finding(
                st, exp, "unregistered", new, det, config,
                summary=f"{st.experiment}: assignments with no registration: {st.s} enrolled of "
                        f"{st.n} eligible distinct users"))
        return findings

    plan = _plan(exp, config)
    if not enr_first and not dn:
        return findings  # nothing enrolled and no new eligible user: no rule can change

    # ---- allowlist ----------------------------------------------------------------------
    al = plan.allowlist
    if al is not None and enr_first:
        bad = [e for u, e in enr_first.items() if u not in al]
        if bad:
            new = _record(st, "allowlist_breach", bad, config)
            if new:
                findings.append(_finding(
                    st, exp, "allowlist_breach", new, _tmin(new), config, plan=plan,
                    summary=f"{st.experiment}: {st.rule_count['allowlist_breach']} enrolled users not on the "
                            f"allowlist of {len(al)} (first: {new[0][0]})"))

    # ---- segments -----------------------------------------------------------------------
    segs = plan.segs
    if segs and enr_events:
        bad_first: dict[str, Assignment] = {}
        missing_breach = config.segment_missing_breach
        for e in enr_events:
            a = e.attributes
            if not a:  # no attributes at all: counted; a breach only if configured so
                st.seg_missing += 1
                if missing_breach and e.user_id not in bad_first:
                    bad_first[e.user_id] = e
                continue
            for k, allowed in segs:
                if a.get(k) not in allowed:
                    if e.user_id not in bad_first:
                        bad_first[e.user_id] = e
                    break
        if bad_first:
            new = _record(st, "segment_breach", bad_first.values(), config)
            if new:
                sa = st.seg_attrs
                offs = st._off
                for u, _ in new:
                    if u in offs:
                        sa[u] = bad_first[u].attributes
                findings.append(_finding(
                    st, exp, "segment_breach", new, _tmin(new), config, plan=plan,
                    summary=f"{st.experiment}: {st.rule_count['segment_breach']} enrolled users outside "
                            f"segments {', '.join(f'{k}={sorted(v)}' for k, v in segs)}"))

    # ---- window -------------------------------------------------------------------------
    win = plan.window
    if win is not None and enr_events:
        lo, hi = win
        # fast path: the whole batch inside the window
        bad_events = [] if lo <= bmin and bmax < hi else [e for e in enr_events if not (lo <= e.ts < hi)]
        if bad_events:
            firsts: dict[str, Assignment] = {}
            for e in bad_events:
                if e.user_id not in firsts:
                    firsts[e.user_id] = e
            wt = st.win_ts
            new = _record(st, "outside_window", firsts.values(), config)
            newset = {u for u, _ in new}
            for e in bad_events:  # offending time span per stored offender, for re-judging
                u = e.user_id
                r = wt.get(u)
                if r is not None:
                    if e.ts < r[0]:
                        r[0] = e.ts
                    if e.ts > r[1]:
                        r[1] = e.ts
                elif u in newset and u in st._off:
                    wt[u] = [e.ts, e.ts]
            if new:
                findings.append(_finding(
                    st, exp, "outside_window", new, _tmin(new), config, plan=plan,
                    summary=f"{st.experiment}: {st.rule_count['outside_window']} users enrolled outside "
                            f"the declared window"))

    # ---- max users ----------------------------------------------------------------------
    mx = plan.max_users
    if mx is not None and ds:
        cnt = st.enrolled_lower_bound()
        if cnt > mx and cnt > st.mu_reported:
            base = max(st.mu_reported, mx)
            over = cnt - base
            if st.fset is None:
                # exact: the users enrolled after the cap, in arrival order
                s_before = st.s - ds
                offending = new_enr[max(0, mx - s_before):]
            else:
                offending = new_enr[-over:] if over < len(new_enr) else new_enr
            new = _record(st, "max_users_exceeded", [enr_first[u] for u in offending], config)
            st.mu_reported = cnt
            if "max_users_exceeded" not in st.rule_first and offending:
                st.rule_first["max_users_exceeded"] = enr_first[offending[0]].ts
            det = enr_first[offending[0]].ts if offending else bmax
            findings.append(_finding(
                st, exp, "max_users_exceeded", new, det, config, plan=plan,
                observed_extra={"enrolled_users_lower_bound": cnt,
                                "enrolled_users_estimate": st.enrolled_estimate()},
                statistic=float(cnt),
                summary=f"{st.experiment}: at least {cnt} distinct enrolled users, declared max {mx}"))

    # ---- fraction: e-detector on first evaluations (only when there are new users) -----
    if plan.p0 is not None and dn and exp.unenrolled_logged > 0:
        f = _fraction(st, exp, plan, dn, dx, ds, bmin, bmax)
        if f is not None:
            findings.append(f)

    # ---- sample ratio mismatch ----------------------------------------------------------
    if plan.srm_key is not None and ds:
        f = _srm(st, exp, plan, batch_vc, bmin, bmax)
        if f is not None:
            findings.append(f)
    return findings


def _sketch_membership(fs, batch_users, enr_first, config, want_new=False):
    """New eligible users (count), new enrolled users (ids, batch order) and, if `want_new`,
    the new users' ids (else None), against the user set.

    One entry per user with an enrolled flag: one hash and one probe per distinct user of the
    batch. Few users: hashed and probed with plain Python and a handful of numpy calls; else
    vectorised. Same answers either way.
    """
    cand = list(batch_users)
    all_enr = batch_users is enr_first.keys() if enr_first else False
    flags = [True] * len(cand) if all_enr else [u in enr_first for u in cand]
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


_LOG_W0 = math.log(budget.START_WEIGHT)
# A rule that fired reads "firing" until the users since its last alarm favour the declaration
# by at least this much (mixture e-value <= 1/20): see rule_breaches.
RESOLVE_LOG_E = -math.log(20.0)
SRM_RESOLVE_MIN_USERS = 100  # the split rule judges its alarm state on at least this many users since the alarm


def _start_log_weight(n_before: int, n_after: int) -> float:
    """ln of the change detector's weight on start points among trials n_before+1..n_after."""
    w = (1.0 - budget.START_WEIGHT) * (budget.start_cdf(n_after) - budget.start_cdf(n_before))
    return math.log(w) if w > 0.0 else -_INF


def _fraction(st, exp, plan, dn, dx, ds, bmin, bmax):
    """One look of the fraction rule: dn new users, dx of them enrolled at their first evaluation.

    Each new user is one trial against the p0 in force now (a registration change is a new
    null from the next batch on; nothing restarts). The statistic is the weighted
    Shiryaev-Roberts e-detector of detector.engine.stats, in segments: an alarm (or a merge)
    starts a new segment with its own share of the lifetime alpha (detector.engine.budget).
    """
    p0 = plan.p0
    st.f_p0 = p0
    if st.f_start is None:
        st.f_start = bmin
    if p0 >= 1.0:
        st.f_stat = 0.0
        return None
    if st.f_lr is None:  # a new segment starts with this batch
        st.f_lr = [_LOG_W0] * len(plan.alts or (0,))
        st.f_sn = st.f_sx = 0
        st.f_start = bmin
        st.f_onset = None
    prev = st.f_stat if st.f_stat is not None else 0.0
    if p0 <= 0.0:  # declared 0%: any enrolment is a breach
        st.f_sn += dn
        st.f_sx += ds
        lm = _INF if st.f_sx > 0 else 0.0
    else:
        st.f_lr = stats.sr_update(st.f_lr, _start_log_weight(st.f_sn, st.f_sn + dn), dx, dn, plan.alts)
        st.f_sn += dn
        st.f_sx += dx
        lm = stats.log_mean_exp(st.f_lr)
    if lm <= prev:
        st.f_onset = None
    elif st.f_onset is None:
        st.f_onset = bmin  # the evidence started rising here: the estimated onset
    st.f_stat = lm
    thr = budget.log_threshold(plan.alpha, "fraction_exceeded", st.f_seg)
    if lm < thr:
        return None
    n, s = st.f_sn, st.f_sx
    onset = st.f_onset if st.f_onset is not None else st.f_start
    est = s / n if n else 0.0
    excess = max(0, int(round(s - p0 * n)))
    st.rule_count["fraction_exceeded"] = st.rule_count.get("fraction_exceeded", 0) + excess
    if "fraction_exceeded" not in st.rule_first or onset < st.rule_first["fraction_exceeded"]:
        st.rule_first["fraction_exceeded"] = onset
    st.rule_last["fraction_exceeded"] = bmax
    st.f_alarms += 1
    observed = {
        "enrolled_users": st.s, "eligible_users": st.n,
        "observed_fraction": st.f_x / st.n if st.n else None,
        "window_enrolled_users": s, "window_eligible_users": n, "window_fraction": est,
        "excess_enrolled_users": excess,
        "log_e_value": lm, "threshold": thr, "segment": st.f_seg,
        "alarms": st.f_alarms, "onset_estimate": onset,
    }
    f = Finding(
        experiment=st.experiment, rule="fraction_exceeded", severity=exp.severity,
        observed=observed, expected=plan.rule_expected("fraction_exceeded"),
        first_offending_event_at=onset, detected_at=bmax, blast_radius=excess, sample_ids=(),
        statistic=lm,
        summary=f"{st.experiment}: {s} of {n} new eligible users enrolled at first evaluation ({est:.4%}) "
                f"vs declared {exp.fraction:.4%} (ln e-value {lm:.1f} >= {thr:.1f})")
    # the next segment starts with the next batch, with its own share of alpha
    st.f_seg += 1
    st.f_lr = None
    st.f_sn = st.f_sx = 0
    st.f_start = bmax
    st.f_onset = None
    st.f_stat = 0.0
    return f


def _srm_key(exp):
    return [[v, float(p)] for v, p in exp.variants.items() if p > 0]


def _srm(st, exp, plan, batch_vc, bmin, bmax):
    key = plan.srm_key
    if st.srm_key is not key and st.srm_key != key:  # new declaration (or first look): the test starts here
        if st.srm_key is not None:  # a new split: a new segment of the budget
            st.srm_seg += 1
        st.srm_key = key
        st.srm_base = {v: c - batch_vc.get(v, 0) for v, c in st.variants.items()}
        # the users of this batch belong to the new test
        st.srm_start = bmin
    if len(key) < 2:
        return None
    vc, base = st.variants, st.srm_base
    counts = [vc.get(v, 0) - base.get(v, 0) for v, _ in key]
    if sum(counts) == 0:
        return None
    probs = plan.srm_probs
    lbf = _srm_log_mixture(counts, plan.srm_consts)
    st.srm_stat = lbf
    thr = budget.log_threshold(plan.alpha, "sample_ratio_mismatch", st.srm_seg)
    if lbf < thr:
        return None
    n = sum(counts)
    excess = int(round(sum(max(0.0, c - p * n) for c, p in zip(counts, probs))))
    st.srm_alarms += 1
    start = st.srm_start if st.srm_start is not None else bmin
    st.rule_count["sample_ratio_mismatch"] = st.rule_count.get("sample_ratio_mismatch", 0) + excess
    st.rule_first.setdefault("sample_ratio_mismatch", start)
    st.rule_last["sample_ratio_mismatch"] = bmax
    observed = {"variants": {v: c for (v, _), c in zip(key, counts)}, "users": n,
                "observed_split": {v: (c / n) for (v, _), c in zip(key, counts)},
                "log_bayes_factor": lbf, "threshold": thr, "alarms": st.srm_alarms,
                "unexpected_variant_users": st.s - sum(vc.get(v, 0) for v, _ in key)}
    f = Finding(
        experiment=st.experiment, rule="sample_ratio_mismatch", severity=exp.severity,
        observed=observed, expected=plan.rule_expected("sample_ratio_mismatch"),
        first_offending_event_at=start, detected_at=bmax, blast_radius=excess, sample_ids=(),
        statistic=lbf,
        summary=f"{st.experiment}: split " + "/".join(str(c) for c in counts) + " vs declared "
                + "/".join(f"{p:g}" for p in probs) + f" (ln BF {lbf:.1f} >= {thr:.1f})")
    st.srm_base = dict(vc)
    st.srm_start = bmax
    st.srm_seg += 1
    return f


# ---------------------------------------------------------------------------------------
def rule_breaches(state: ExperimentState, expectation: Expectation | None,
                  config: EngineConfig = DEFAULT_CONFIG) -> dict[str, bool]:
    """Re-judge the current state under a (possibly new) declaration; rule -> breached.

    Exact where the state allows: allowlist against every enrolled id while exact,
    else against the stored offender records (plus pigeonhole on the enrolled lower
    bound); window on the enrolled min/max event time; segments on the stored
    offending attributes; the statistical rules (fraction, split) as the alarm logic
    leaves them: "firing" from an alarm until the users since that alarm favour the
    (possibly new) declaration: fraction, mixture e-value <= 1/20; split, Bayes factor <= 1
    on at least 100 users. So a registration that catches up with a legitimate ramp
    resolves the page, and one that does not keeps it.
    """
    st = state
    exp = expectation
    if exp is None:
        return {"unregistered": st.events > 0}
    out: dict[str, bool] = {}
    for rule in exp.active_rules():
        if rule == "allowlist_breach":
            al = exp.allowlist
            if st.fset is None:
                b = any(u not in al for u in st.enr)
            else:
                b = any(u not in al for u in st._off) or st.enrolled_lower_bound() > len(al)
                stored = sum(1 for r in st._off.values() if r[2] & 2)
                b = b or st.rule_count.get("allowlist_breach", 0) > stored
            out[rule] = b
        elif rule == "max_users_exceeded":
            out[rule] = st.enrolled_lower_bound() > exp.max_users
        elif rule == "fraction_exceeded":
            out[rule] = _fraction_firing(st, exp, config)
        elif rule == "segment_breach":
            segs = exp.segments
            b = False
            for u, a in st.seg_attrs.items():
                if (config.segment_missing_breach if not a
                    else any(a.get(k) not in allowed for k, allowed in segs.items())):
                    b = True
                    break
            stored = sum(1 for r in st._off.values() if r[2] & 4)
            out[rule] = b or st.rule_count.get("segment_breach", 0) > stored
        elif rule == "outside_window":
            lo, hi = _window(exp, config)
            out[rule] = st.enr_min_ts is not None and (st.enr_min_ts < lo or st.enr_max_ts >= hi)
        elif rule == "sample_ratio_mismatch":
            out[rule] = _srm_firing(st, exp, config)
    return out


def _fraction_firing(st: ExperimentState, exp: Expectation, config: EngineConfig) -> bool:
    """The fraction rule's alarm state, judged against `exp` (see rule_breaches)."""
    if st.f_alarms == 0 or exp.unenrolled_logged <= 0:
        return False
    p0 = stats.effective_p0(exp.fraction, exp.tolerance, exp.unenrolled_logged)
    if p0 >= 1.0:
        return False
    if p0 <= 0.0:
        return True
    alts = stats.fraction_alternatives(p0, config.fraction_ratios)
    return stats.log_mixture(st.f_sx, st.f_sn, alts) > RESOLVE_LOG_E


def _srm_firing(st: ExperimentState, exp: Expectation, config: EngineConfig) -> bool:
    """The split rule's alarm state, judged against `exp` on the users since its last alarm."""
    key = _srm_key(exp)
    if st.srm_alarms == 0 or len(key) < 2:
        return False
    base = st.srm_base
    counts = [st.variants.get(v, 0) - base.get(v, 0) for v, _ in key]
    if sum(counts) < SRM_RESOLVE_MIN_USERS:
        return True
    tot = sum(p for _, p in key)
    # The Dirichlet mixture's Bayes factor falls only like sqrt(k / n) on a balanced split, so
    # the split rule resolves once it no longer favours a mismatch at all (BF <= 1).
    return stats.srm_log_mixture(counts, [p / tot for _, p in key], config.srm_concentrations) > 0.0


def observe(state: ExperimentState, expectation: Expectation | None,
            config: EngineConfig = DEFAULT_CONFIG) -> dict:
    """Observed vs expected and the state of each rule, as JSON-able data."""
    st = state
    exp = expectation
    variants = dict(st.variants)
    if st.variant_none:
        variants["(none)"] = st.variant_none
    observed = {
        "enrolled_users": st.s,
        "eligible_users": st.n,
        "observed_fraction": (st.s / st.n) if st.n else None,
        "enrolled_users_estimate": st.enrolled_estimate(),
        "enrolled_users_lower_bound": st.enrolled_lower_bound(),
        "variants": variants,
        "events": st.events,
        "first_event_at": st.first_ts,
        "last_event_at": st.last_ts,
        "counting": "exact" if st.fset is None else "sketch",
        "first_evaluation_enrolled_users": st.f_x,
        "enrolled_events_without_attributes": st.seg_missing,
        "out_of_target_users": st.offender_count,
    }
    breaches = rule_breaches(st, exp, config)
    alpha = config.alpha if exp is None or exp.alpha is None else exp.alpha
    rules: dict[str, dict] = {}
    for rule, b in breaches.items():
        r = {"state": "firing" if b else "ok", "statistic": None, "threshold": None,
             "offenders": st.rule_count.get(rule, 0),
             "first_offending_event_at": st.rule_first.get(rule),
             "last_offending_event_at": st.rule_last.get(rule)}
        if rule in ("unregistered", "allowlist_breach", "segment_breach", "outside_window"):
            r["statistic"], r["threshold"] = float(st.rule_count.get(rule, 0)), 0.0
        elif rule == "max_users_exceeded":
            r["statistic"], r["threshold"] = float(st.enrolled_lower_bound()), float(exp.max_users)
        elif rule == "fraction_exceeded":
            r.update(statistic=st.f_stat, threshold=budget.log_threshold(alpha, rule, st.f_seg),
                     alarms=st.f_alarms, segment=st.f_seg)
        elif rule == "sample_ratio_mismatch":
            r.update(statistic=st.srm_stat, threshold=budget.log_threshold(alpha, rule, st.srm_seg),
                     alarms=st.srm_alarms, segment=st.srm_seg)
        rules[rule] = r
    return {"experiment": st.experiment, "observed": observed, "expected": expected_dict(exp), "rules": rules}
