"""Detection statistics benchmark: lifetime false alarms, ramps, registration changes, detection
delays, the fleet budget, and agreement of the vectorised model with the engine, from one run.

    .venv/bin/python bench/stats.py [--quick] [--write] [--seed N]

The fraction rule's statistic (detector.engine.stats, budget) is simulated two ways:
- a vectorised model (bench/stats_model.py), one array row per simulated experiment, for the
  large path counts: per look, m new users (first evaluations) of which x enrolled, judged
  against the p0 in force. Looks after every user for the first 1,000 users, then looks
  growing by 1% (the test is anytime-valid: any look schedule is covered by the bound; the
  per-user looks early on are where a false alarm is likeliest);
- the real engine (`process_batch`) on generated event streams with returning users, 1-20
  events per visit and registration changes, for a subset; the engine's statistic is
  compared with the model fed the same batches.
Beyond the simulated horizon H: by Ville's inequality applied from H on,
P(alarm after H | history to H) <= alpha_seg * Q_H with Q_H = mean_j R_j(H) + the start weight
not yet spent, so the lifetime false-alarm probability is at most (simulated rate to H) +
alpha_seg * E[Q_H], which the run estimates.
SRM: Lindon-Malek mixture BF, alarm iff |x - N/2| >= d(N) (precomputed boundary), looks after
every user; naive chi-squared p < 0.001 every look for comparison; agreement with Optimizely's
ssrm-test (its own venv, .venv-ssrm, because it needs numpy < 2).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
import warnings

import numpy as np
from scipy import stats as sst
from scipy.special import gammaln, logsumexp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.stats_model import SRPaths, look_schedule  # noqa: E402
from detector.engine import EngineConfig, ExperimentState, budget, process_batch, stats  # noqa: E402
from detector.events import Assignment  # noqa: E402
from detector.registration.compiled import DEFAULT_TOLERANCE, CompiledRegistration  # noqa: E402

P0 = 0.01
ALPHA = 1e-4
NAIVE_P = 1e-3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clopper_pearson(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    a = 1 - conf
    lo = 0.0 if k == 0 else sst.beta.ppf(a / 2, k, n - k + 1)
    hi = 1.0 if k == n else sst.beta.ppf(1 - a / 2, k + 1, n - k)
    return float(lo), float(hi)


# ---- SRM ---------------------------------------------------------------------------------
def srm_log_mixture_np(x: np.ndarray, n: np.ndarray, ks=stats.SRM_CONCENTRATIONS) -> np.ndarray:
    ls = []
    for k in ks:
        a = k * 0.5
        ls.append(gammaln(a + x) + gammaln(a + n - x) - 2 * gammaln(a) + gammaln(k) - gammaln(k + n)
                  + n * math.log(2))
    return logsumexp(np.stack(ls), axis=0) - math.log(len(ks))


def srm_boundary(horizon: int, alpha: float) -> np.ndarray:
    """hi[N] = least x >= N/2 with ln BF >= ln(1/alpha) (N+1 if none); by symmetry alarm iff
    x >= hi[N] or N - x >= hi[N]."""
    n = np.arange(horizon + 1, dtype=np.float64)
    lo = np.ceil(n / 2)
    hi = n + 1
    thr = math.log(1 / alpha)
    for _ in range(int(math.log2(horizon + 2)) + 2):
        mid = np.floor((lo + hi) / 2)
        ok = srm_log_mixture_np(np.minimum(mid, n), n) >= thr
        ok &= mid <= n
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid + 1)
    return hi.astype(np.int64)


def srm_paths(rng, n_paths: int, q: float, horizon: int, d, chunk: int = 500):
    chi_crit = sst.chi2.isf(NAIVE_P, 1)
    n = np.arange(1, horizon + 1)
    first_bf, first_chi = [], []
    for start in range(0, n_paths, chunk):
        m = min(chunk, n_paths - start)
        x = np.cumsum(rng.random((m, horizon), dtype=np.float32) < q, axis=1, dtype=np.int32)
        hb = d[1:][None, :]
        bf_hit = (x >= hb) | ((n[None, :] - x) >= hb)
        chi_hit = (2 * x - n[None, :]) ** 2 >= chi_crit * n[None, :]
        for hit, acc in ((bf_hit, first_bf), (chi_hit, first_chi)):
            any_ = hit.any(axis=1)
            acc.append(np.where(any_, hit.argmax(axis=1) + 1, np.inf))
    return np.concatenate(first_bf), np.concatenate(first_chi)


# ---- ssrm-test agreement -------------------------------------------------------------------
def our_sequential_p(rows: np.ndarray, null: list[float], k: float) -> list[float]:
    counts = np.zeros(len(null), np.int64)
    p, out = 1.0, []
    for r in rows:
        counts += r
        bf = math.exp(stats.srm_log_bf(counts.tolist(), null, k))
        p = min(p, 1.0 / bf)
        out.append(min(1.0, p))
    return out


def ssrm_agreement(rng) -> tuple[str, float | None]:
    py = os.path.join(ROOT, ".venv-ssrm", "bin", "python")
    if not os.path.exists(py):
        return ("ssrm-test venv missing: create it with `python3 -m venv .venv-ssrm && "
                ".venv-ssrm/bin/pip install 'numpy<2' ssrm-test`", None)
    cases = []
    null3 = [0.5, 0.3, 0.2]
    one_hot = np.eye(3, dtype=np.int64)[rng.choice(3, size=400, p=[0.47, 0.33, 0.2])]
    cases.append(("3 variants, unit rows, 400 users", one_hot, null3))
    two = np.eye(2, dtype=np.int64)[rng.choice(2, size=600, p=[0.6, 0.4])]
    cases.append(("2 variants 60/40 vs 50/50, unit rows", two, [0.5, 0.5]))
    agg = rng.multinomial(50, [0.5, 0.3, 0.2], size=40)
    cases.append(("3 variants, time-aggregated rows (40 x 50)", agg, null3))
    ks = [1e2, 1e3, 1e4]
    worst = 0.0
    lines = []
    for name, rows, null in cases:
        req = json.dumps({"data": rows.tolist(), "null": null, "ks": ks})
        res = subprocess.run([py, os.path.join(ROOT, "bench", "stats_ssrm_helper.py")], input=req,
                             capture_output=True, text=True, check=True)
        theirs = json.loads(res.stdout)
        diffs = []
        for k in ks:
            ours = our_sequential_p(rows, null, k)
            diffs.append(max(abs(a - b) for a, b in zip(ours, theirs[str(k)])))
        worst = max(worst, max(diffs))
        lines.append(f"| {name} | {len(rows)} | {max(diffs):.2e} | {min(theirs[str(1e4)]):.3g} |")
    table = ("| data | looks | max abs diff of sequential p-values (k=1e2,1e3,1e4) | final ssrm p (k=1e4) |\n"
             "|---|---|---|---|\n" + "\n".join(lines))
    return table, worst


# ---- fraction: vectorised model ----------------------------------------------------------
def null_sup(rng, n_paths: int, p0: float, horizon: int, p_true: float | None = None,
             chunk: int = 10000) -> tuple[np.ndarray, np.ndarray]:
    """sup over looks of ln mean_j R_j per path, and ln Q_H at the horizon (first segment)."""
    p = p0 if p_true is None else p_true
    sched = look_schedule(horizon)
    sups, qs = [], []
    for start in range(0, n_paths, chunk):
        m = min(chunk, n_paths - start)
        sr = SRPaths(m)
        sup = np.full(m, -np.inf)
        for k in sched:
            np.maximum(sup, sr.look(rng.binomial(k, p, m).astype(float), int(k), p0), out=sup)
        unspent = (1 - budget.START_WEIGHT) * (1 - budget.start_cdf(horizon))
        sups.append(sup)
        qs.append(np.logaddexp(sr.stat(), math.log(unspent)))
    return np.concatenate(sups), np.concatenate(qs)


def piecewise_sup(rng, n_paths: int, steps: list[tuple[int, float, float]], chunk: int = 10000) -> np.ndarray:
    """sup of the statistic over a stream in steps (users, true first-evaluation rate, declared p0)."""
    total = sum(u for u, _, _ in steps)
    sched = look_schedule(total)
    bounds = np.cumsum([u for u, _, _ in steps])
    out = []
    for start in range(0, n_paths, chunk):
        m = min(chunk, n_paths - start)
        sr = SRPaths(m)
        sup = np.full(m, -np.inf)
        n = 0
        for k in sched:
            # split a look at step boundaries (a registration change applies from the next batch)
            while k > 0:
                i = int(np.searchsorted(bounds, n, side="right"))
                take = int(min(k, bounds[i] - n))
                _, p, p0 = steps[i]
                np.maximum(sup, sr.look(rng.binomial(take, p, m).astype(float), take, p0), out=sup)
                n += take
                k -= take
        out.append(sup)
    return np.concatenate(out)


def first_crossing(rng, n_paths: int, p0: float, p: float, kmax: int, thr: float,
                   prefix: int = 0, prefix_p: float | None = None) -> np.ndarray:
    """Users after the onset until the alarm: per-user looks up to 2,000 users, then looks growing 1%."""
    sr = SRPaths(n_paths)
    pp = p0 if prefix_p is None else prefix_p
    for k in look_schedule(prefix, per_user=0, growth=1.01) if prefix else []:
        sr.look(rng.binomial(int(k), pp, n_paths).astype(float), int(k), p0)
    first = np.full(n_paths, np.inf)
    n = 0
    for k in look_schedule(kmax, per_user=2000):
        k = int(k)
        st = sr.look(rng.binomial(k, p, n_paths).astype(float), k, p0)
        n += k
        hit = (st >= thr) & np.isinf(first)
        first[hit] = n
    return first


# ---- fraction: the engine end to end -----------------------------------------------------------
T0 = 1_700_000_000_000


def engine_stream(rng, exp_name: str, steps: list[tuple[int, float, float]], returning: float = 0.5,
                  batch_events: int = 500, ev_max: int = 20, asym: float = 1.0):
    """Visits (new user with probability 1 - returning, else a previously seen user), each 1..ev_max
    evaluations; sticky hash bucketing: user u enrolled iff bucket < the flag's rate at the time.
    Steps: (new users, flag rate, declared fraction). Yields (events, declared fraction, new-user
    first-evaluation counts of the batch (dn, dx) computed independently of the engine)."""
    buckets: list[float] = []
    seen_first: set[int] = set()
    ts = T0
    for n_new, flag, declared in steps:
        made = 0
        evs: list[Assignment] = []
        dn = dx = 0
        while made < n_new:
            if buckets and rng.random() < returning:
                uid = int(rng.integers(len(buckets)))
            else:
                uid = len(buckets)
                buckets.append(float(rng.random()))
                made += 1
            enrolled = buckets[uid] < flag
            variant = ("control", "treatment")[uid % 2] if enrolled else None
            for _ in range(int(rng.integers(1, ev_max + 1))):
                if not enrolled and asym < 1.0 and rng.random() > asym:
                    continue  # a not-enrolled evaluation lost by the logging path
                evs.append(Assignment(exp_name, f"u{uid}", variant, enrolled, ts))
                if uid not in seen_first:
                    seen_first.add(uid)
                    dn += 1
                    dx += enrolled
                ts += 1
            if len(evs) >= batch_events:
                yield evs, declared, dn, dx
                evs, dn, dx = [], 0, 0
        if evs:
            yield evs, declared, dn, dx


def engine_paths(rng, n_paths: int, steps, config: EngineConfig, asym: float = 1.0, tolerance: float = DEFAULT_TOLERANCE,
                 model_from_engine: bool = False):
    """Run the engine over generated streams; returns (false alarms, worst |engine - model| statistic,
    user-level counts of the last path). The model is fed the first-evaluation counts computed from
    the generated stream (checks the engine's counting and arithmetic), or with `model_from_engine`
    the engine's own per-batch counts (arithmetic only: with fingerprint collisions the engine
    counts fewer users by design)."""
    alarms = 0
    worst = 0.0
    last = None
    for i in range(n_paths):
        st = ExperimentState.new("e")
        model = SRPaths(1)
        exps: dict[float, CompiledRegistration] = {}
        fired = False
        for evs, declared, dn, dx in engine_stream(rng, "e", steps, asym=asym):
            exp = exps.get(declared)
            if exp is None:
                exp = exps[declared] = CompiledRegistration("e", fraction=declared, tolerance=tolerance,
                                                   variants={"control": 0.5, "treatment": 0.5})
            n_before, x_before = st.n, st.f_x
            out = process_batch(st, exp, evs, config)
            if model_from_engine:
                dn, dx = st.n - n_before, st.f_x - x_before
            if dn:
                mstat = model.look(np.array([float(dx)]), dn, stats.effective_p0(declared, tolerance))[0]
                if not any(f.rule == "fraction_exceeded" for f in out):
                    worst = max(worst, abs(mstat - st.rules["fraction_exceeded"].stat))
            if any(f.rule in STAT_RULES for f in out):
                fired = True
                model = SRPaths(1)  # the engine starts a new segment
        alarms += fired
        last = (st.n, st.f_x, st.s)
    return alarms, worst, last


def returning_bug(rng, first: int, visits: int, returning: float, bug_rate: float, fraction: float = 0.01,
                  batch_events: int = 500) -> tuple[int | None, int | None, int]:
    """The review's scenario through the engine: `first` new users at `fraction`, then `visits`
    visits (a returning user with probability `returning`), returning users enrolled with
    probability `bug_rate` at each visit (a targeting bug on returning users). Returns (visits
    after the bug until the returning-users rule pages, same for the fraction rule, users newly
    enrolled when the returning-users rule paged, or by the end if it never did)."""
    st = ExperimentState.new("e")
    exp = CompiledRegistration("e", fraction=fraction)
    bucket = rng.random(first + visits)
    evs = [Assignment("e", f"u{i}", "on" if bucket[i] < fraction else None, bool(bucket[i] < fraction), T0 + i)
           for i in range(first)]
    for i in range(0, first, batch_events):
        process_batch(st, exp, evs[i:i + batch_events])
    s_before = st.s
    n = first
    found: dict[str, int] = {}
    newly = 0
    batch: list[Assignment] = []
    for k in range(visits):
        if rng.random() < returning:
            u = int(rng.integers(n))
            enr = bool(bucket[u] < fraction or rng.random() < bug_rate)
        else:
            u, n = n, n + 1
            enr = bool(bucket[u] < fraction)
        batch.append(Assignment("e", f"u{u}", "on" if enr else None, enr, T0 + first + k))
        if len(batch) >= batch_events or k == visits - 1:
            for f in process_batch(st, exp, batch):
                if f.rule not in found:
                    found[f.rule] = k + 1
                    if f.rule == "returning_enrolled_exceeded":
                        newly = st.s - s_before
            batch = []
    r = found.get("returning_enrolled_exceeded")
    return r, found.get("fraction_exceeded"), newly if r is not None else st.s - s_before


STAT_RULES = ("fraction_exceeded", "returning_enrolled_exceeded", "sample_ratio_mismatch")
RAMP = (0.01, 0.05, 0.25, 0.5)


def _engine_ramp_chunk(args: tuple[int, int]) -> tuple[int, int, dict[str, int]]:
    """Engine ramp paths [seed's chunk]: each step 1-2k new users (random per step), 50% returning,
    1-20 evaluations per visit, registration updated with the flag. (paths, paths with an alarm,
    alarms by rule)."""
    seed, n = args
    rng = np.random.default_rng(seed)
    cfg = EngineConfig()
    exps = {f: CompiledRegistration("e", fraction=f, variants={"control": 0.5, "treatment": 0.5}) for f in RAMP}
    fired = 0
    by_rule: dict[str, int] = {}
    for _ in range(n):
        st = ExperimentState.new("e")
        steps = [(int(rng.integers(1000, 2001)), f, f) for f in RAMP]
        hit = False
        for evs, declared, _, _ in engine_stream(rng, "e", steps):
            for f in process_batch(st, exps[declared], evs, cfg):
                if f.rule in STAT_RULES:
                    by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
                    hit = True
        fired += hit
    return n, fired, by_rule


def engine_ramps(seed: int, n_paths: int, procs: int = 2) -> tuple[int, int, dict[str, int]]:
    """`n_paths` engine ramp paths over `procs` processes."""
    from multiprocessing import Pool

    chunks = [(seed * 1000 + i, n_paths // procs + (i < n_paths % procs)) for i in range(procs)]
    with Pool(procs) as pool:
        res = pool.map(_engine_ramp_chunk, chunks)
    by_rule: dict[str, int] = {}
    for _, _, b in res:
        for k, v in b.items():
            by_rule[k] = by_rule.get(k, 0) + v
    return sum(r[0] for r in res), sum(r[1] for r in res), by_rule


# ---- fleet ------------------------------------------------------------------------------------
def fleet(rng, n_exp: int, alpha: float, h_lo: float = 1e4, h_hi: float = 1e6) -> tuple[int, int]:
    """Null experiments (fraction at its alert level, 50/50 split as declared), lifetimes log-uniform
    in [h_lo, h_hi] users, random p0; every alarm counted (a rule restarts in its next segment
    after an alarm). Returns (false pages, experiments with >= 1)."""
    p0s = rng.choice([0.01, 0.05, 0.2, 0.5], n_exp)
    hor = np.exp(rng.uniform(math.log(h_lo), math.log(h_hi), n_exp))
    pages = np.zeros(n_exp, np.int64)
    groups = []
    for p0 in np.unique(p0s):
        groups.append((p0, np.flatnonzero(p0s == p0)))
    for p0, idx in groups:
        m = len(idx)
        sr = SRPaths(m)
        fseg = np.ones(m, np.int64)
        sseg = np.ones(m, np.int64)
        x_enr = np.zeros(m)  # SRM: enrolled users and treatment count in the running segment
        x_tr = np.zeros(m)
        n = 0
        for k in look_schedule(int(h_hi)):
            k = int(k)
            act = n + k <= hor[idx]
            n += k
            xs = rng.binomial(k, p0, m).astype(float)
            st_f = sr.look(xs, k, float(p0))
            thr_f = -np.log(alpha * budget.RULE_SHARE["fraction_exceeded"] * np.vectorize(budget.segment_share)(fseg))
            fa = act & (st_f >= thr_f)
            x_enr += xs
            x_tr += rng.binomial(xs.astype(np.int64), 0.5)
            lbf = srm_log_mixture_np(x_tr, x_enr)
            thr_s = -np.log(alpha * budget.RULE_SHARE["sample_ratio_mismatch"] * np.vectorize(budget.segment_share)(sseg))
            sa = act & (lbf >= thr_s)
            pages[idx] += fa + sa
            if fa.any():
                sr.lr[fa] = math.log(budget.START_WEIGHT)
                sr.n[fa] = 0
                fseg[fa] += 1
            if sa.any():
                x_enr[sa] = 0
                x_tr[sa] = 0
                sseg[sa] += 1
            if not act.any():
                break
    return int(pages.sum()), int((pages > 0).sum())


# ---- main -------------------------------------------------------------------------------
def median_ci(d: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free 95% CI of a median: the order statistics n/2 -+ z sqrt(n)/2."""
    x = np.sort(d)
    n = len(x)
    half = z * math.sqrt(n) / 2
    return float(x[max(0, int(n / 2 - half))]), float(x[min(n - 1, int(math.ceil(n / 2 + half)))])


def kl_bern(p: float, q: float) -> float:
    """KL(Bernoulli(p) || Bernoulli(q)) in nats."""
    a = p * math.log(p / q) if p > 0 else 0.0
    b = (1 - p) * math.log((1 - p) / (1 - q)) if p < 1 else 0.0
    return a + b


def fmt_users(v: float) -> str:
    return "not within horizon" if not math.isfinite(v) else f"{v:,.0f}"


def rate_row(name: str, k: int, n: int, bound: float | None = None) -> str:
    lo, hi = clopper_pearson(k, n)
    b = f" | {bound:.2e}" if bound is not None else ""
    return f"| {name} | {k:,} / {n:,} | {k / n:.2e} | [{lo:.1e}, {hi:.1e}]{b} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run with few paths")
    ap.add_argument("--write", action="store_true", help="write the results into BENCHMARKS.md")
    ap.add_argument("--seed", type=int, default=20241202)
    ap.add_argument("--engine-ramps", type=int, default=0, metavar="N",
                    help="also run N engine ramp paths (process_batch; ~0.5 s a path, 2 processes)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # percentiles over inf (no alarm)
    rng = np.random.default_rng(args.seed)
    prng = random.Random(args.seed)
    t0 = time.perf_counter()
    q = args.quick
    null_paths = 2000 if q else 20000
    null_h = 10_000_000
    side_paths = 500 if q else 2000
    delay_paths = 300 if q else 4000
    late_paths = 100 if q else 500
    e2e_paths = 4 if q else 12
    srm_null_paths = 1000 if q else 6000
    srm_null_h = 20_000
    srm_delay_paths = 300 if q else 1000
    fleet_n = 2000 if q else 10000
    a_seg_f = budget.segment_alpha(ALPHA, "fraction_exceeded", 1)
    thr_f = budget.log_threshold(ALPHA, "fraction_exceeded", 1)
    a_seg_s = budget.segment_alpha(ALPHA, "sample_ratio_mismatch", 1)
    out: list[str] = []
    cmd = ("`nice .venv/bin/python bench/stats.py" + (" --quick" if q else "")
           + (f" --engine-ramps {args.engine_ramps}" if args.engine_ramps else "") + f" --seed {args.seed} --write`")
    out.append(f"Command: {cmd} (one run, seed {args.seed}; {'QUICK smoke run' if q else 'full run'}; "
               "2 shared vCPUs). Experiment alpha = 1e-4 (the fleet share at the default budget: 1 false page "
               f"a month over 10,000 experiments); fraction rule first segment alpha = {a_seg_f:.3g} "
               f"(ln threshold {thr_f:.2f}), split rule {a_seg_s:.3g}. The fraction rule's unit is a user's "
               "first evaluation; its statistic is the weighted Shiryaev-Roberts e-detector (mixture SPRT "
               "from the start + the same test from every later start point), so 'combined rule' below "
               "is one statistic with one threshold.")
    out.append("")

    # 1. lifetime null, 1e7 users
    out.append(f"### Fraction rule, lifetime false alarms under the null (true rate = alert level p0), "
               f"{null_paths:,} paths x {null_h:,} users each")
    out.append("")
    out.append("Looks after every user up to 1,000 users, then looks 1% apart. Columns: false alarms at the "
               "default alpha, and at alpha 1e-2 / 1e-3 from the same paths (the statistic does not depend on "
               "alpha, only the threshold does), each against its bound (the segment alpha). At alpha 1e-4 the "
               f"bound ({a_seg_f:.2g}) means at most ~{a_seg_f * null_paths:.2f} expected alarms in {null_paths:,} "
               "paths, so that column cannot resolve the rate; the 1e-3 and 1e-2 columns, from the same paths, "
               "resolve it against their bounds. Beyond 10^7 users the bound is Ville's inequality itself "
               "(P(ever) <= segment alpha over an unbounded horizon); no simulated column can add to it.")
    out.append("")
    out.append("| p0 | alpha 1e-4: alarms | alpha 1e-3: alarms (bound) | alpha 1e-2: alarms (bound) |")
    out.append("|---|---|---|---|")
    null_ok = True
    for p0 in (0.01, 0.2, 0.5):
        sup, _ = null_sup(rng, null_paths, p0, null_h)
        cells = []
        for a in (1e-4, 1e-3, 1e-2):
            t = budget.log_threshold(a, "fraction_exceeded", 1)
            k = int((sup >= t).sum())
            bound = budget.segment_alpha(a, "fraction_exceeded", 1)
            lo, hi = clopper_pearson(k, null_paths)
            cells.append((k, bound, lo, hi))
            null_ok &= lo <= bound
        k4 = cells[0][0]
        out.append(f"| {p0:.0%} | {k4} / {null_paths:,} (CI hi {cells[0][3]:.1e}) | "
                   f"{cells[1][0]} ({cells[1][0] / null_paths:.1e} vs {cells[1][1]:.1e}) | "
                   f"{cells[2][0]} ({cells[2][0] / null_paths:.1e} vs {cells[2][1]:.1e}) |")
    out.append("")

    # 2. ramps, asymmetry, registration changes (model)
    out.append(f"### Ordinary operations (model, {side_paths:,} paths each; default tolerance {DEFAULT_TOLERANCE:g}; "
               "false alarms are any alarm)")
    out.append("")
    out.append("| scenario | false alarms | rate | 95% CI |")
    out.append("|---|---|---|---|")
    tol = DEFAULT_TOLERANCE
    ep = lambda f: stats.effective_p0(f, tol)  # noqa: E731
    ramp = [(25_000, f, ep(f)) for f in (0.01, 0.05, 0.25, 0.5)]
    sup = piecewise_sup(rng, side_paths, ramp)
    k_ramp = int((sup >= thr_f).sum())
    out.append(rate_row("ramp 1% -> 5% -> 25% -> 50% (25k new users a step), registration updated at each step",
                        k_ramp, side_paths))
    ramp_edge = [(25_000, ep(f), ep(f)) for f in (0.01, 0.05, 0.25, 0.5)]
    sup = piecewise_sup(rng, side_paths, ramp_edge)
    out.append(rate_row(f"same ramp with every step exactly at its alert level fraction x {1 + tol:g}", int((sup >= thr_f).sum()),
                        side_paths))
    down = [(50_000, 0.05, ep(0.05)), (50_000, 0.01, ep(0.01))]
    sup = piecewise_sup(rng, side_paths, down)
    out.append(rate_row("ramp down 5% -> 1%, flag and registration together", int((sup >= thr_f).sum()), side_paths))
    osc = [(20_000, f, ep(f)) for f in (0.01, 0.02, 0.01, 0.02, 0.01)]
    sup = piecewise_sup(rng, side_paths, osc)
    out.append(rate_row("registration changed 4 times mid-stream (1% <-> 2%), flag following",
                        int((sup >= thr_f).sum()), side_paths))
    asym_rows = []
    for p in (0.01, 0.2, 0.5):
        seen = p / (p + 0.95 * (1 - p))  # not-enrolled users logged 5% less often
        sup, _ = null_sup(rng, side_paths, ep(p), null_h, p_true=seen)
        asym_rows.append(rate_row(f"5% logging asymmetry at {p:.0%}, 10^7 users, default tolerance",
                                  int((sup >= thr_f).sum()), side_paths))
    out.extend(asym_rows)
    sup, _ = null_sup(rng, side_paths, 0.01, null_h, p_true=0.01 / (0.01 + 0.95 * 0.99))
    out.append(rate_row("same at 1% with tolerance 0 (what the default prevents)", int((sup >= thr_f).sum()),
                        side_paths))
    samp = stats.effective_p0(0.01, tol, 0.2)
    sup, _ = null_sup(rng, side_paths, samp, 1_000_000, p_true=0.01 / (0.01 + 0.2 * 0.99))
    out.append(rate_row("not-enrolled evaluations sampled at q = 0.2 (`unenrolled_logged: 0.2`), 10^6 users",
                        int((sup >= thr_f).sum()), side_paths))
    out.append("")

    # registration lagging the flag: must page
    lag = first_crossing(rng, delay_paths, ep(0.01), 0.05, 200_000, thr_f, prefix=50_000, prefix_p=0.01)
    out.append(f"A ramp done in the flag before the registration catches up (declared 1%, flag 1% for 50k users, "
               f"then 5%): paged in {np.isfinite(lag).mean():.1%} of {delay_paths:,} paths, median "
               f"{fmt_users(np.median(lag))} new users after the flag change (p90 {fmt_users(np.percentile(lag, 90))}).")
    out.append("")

    # 3. the engine end to end
    cfg = EngineConfig()
    e2e_steps = [(5_000, f, f) for f in (0.01, 0.05, 0.25, 0.5)]
    fa, worst, last = engine_paths(rng, e2e_paths, e2e_steps, cfg)
    small = EngineConfig(fingerprint_bits=16)
    fa2, worst2, last2 = engine_paths(rng, 2, [(60_000, 0.01, 0.01)], small, model_from_engine=True)
    out.append("### The engine end to end (`process_batch`, generated events)")
    out.append("")
    out.append("Visits: 50% by returning users, each visit 1-20 evaluations, sticky hash bucketing (a returning user "
               "not enrolled before enrols when the flag ramps past their bucket), batches of ~500 events, "
               "50/50 split declared (the split rule runs too).")
    out.append("")
    out.append("| scenario | paths | alarms (any statistical rule) | max abs(engine - model) ln e-value |")
    out.append("|---|---|---|---|")
    out.append(f"| ramp 1% -> 5% -> 25% -> 50%, 5k new users a step, registration updated at each step | "
               f"{e2e_paths} | {fa} | {worst:.1e} |")
    out.append(f"| 60k new users at 1%, 16-bit fingerprints (65,536 slots: heavy collisions; model fed the "
               f"engine's counts) | 2 | {fa2} | {worst2:.1e} |")
    out.append("")
    out.append("Over-enrolment of returning users (the review's scenario, one engine path each; visits "
               "counted after the bug starts, batches of 500 events):")
    out.append("")
    out.append("| scenario | returning-users rule pages after | fraction rule pages after (200k visits) | "
               "users newly enrolled when paged (or by the end) |")
    out.append("|---|---|---|---|")
    for label, first, visits, bug in (
            ("100k users at declared 1%, then 200k visits, 95% returning, bug enrolls every returning visit",
             100_000, 200_000, 1.0),
            ("same, bug enrolls 20% of returning visits", 100_000, 200_000, 0.2),
            (f"same, bug enrolls 1% of returning visits (below p0 = {0.01 * (1 + DEFAULT_TOLERANCE):.2%}: not evidence, by design)",
             100_000, 200_000, 0.01)):
        r_at, f_at, newly = returning_bug(rng, first, visits, 0.95, bug)
        out.append(f"| {label} | {'never' if r_at is None else f'{r_at:,} visits'} | "
                   f"{'never' if f_at is None else f'{f_at:,} visits'} | {newly:,} |")
    out.append("")
    if args.engine_ramps:
        te = time.perf_counter()
        er_n, er_fired, er_rules = engine_ramps(args.seed, args.engine_ramps)
        er_s = time.perf_counter() - te
        out.append(f"Engine ramp paths (`--engine-ramps {args.engine_ramps}`): {er_n:,} paths of `process_batch`, "
                   "ramp 1% -> 5% -> 25% -> 50% with the registration updated at each step, 1,000-2,000 new users "
                   "a step (random per step), 50% returning visits, 1-20 evaluations a visit, batches of ~500 "
                   f"events, 50/50 split declared: paths with any statistical alarm (fraction, returning users, "
                   f"split): **{er_fired}** of {er_n:,} (alarms by rule: {er_rules or 'none'}; {er_s:.0f} s on 2 "
                   "processes).")
        out.append("")
    n, fx, s_ = last
    n2, fx2, s2 = last2
    out.append(f"Last ramp path: {n:,} distinct users, {fx:,} enrolled at their first evaluation ({fx / n:.1%}), "
               f"{s_:,} enrolled at any time ({s_ / n:.1%}: returning users upgraded by the ramp; counting them "
               f"as enrolments without a new eligible user is what paged every ramp before). 16-bit run: n = "
               f"{n2:,} of 60,000 users counted (collisions hide the rest), first-evaluation fraction "
               f"{fx2 / n2:.2%} (unbiased: a collision drops a user from n and S alike), "
               f"while S/n = {s2 / n2:.2%} (a colliding enrolled user upgrades a not-enrolled entry).")
    out.append("")

    # 4. delays
    p0_def = ep(0.01)
    out.append(f"### Fraction rule, detection delay in new eligible users (declared 1%, {delay_paths:,} paths)")
    out.append("")
    out.append(f"At the shipped default tolerance {tol:g} the test judges against p0 = {p0_def:.2%} (the alert level); the "
               f"tolerance-0 column is the same test against 1.0% (what the delays were measured at before). "
               f"Wald: no test with segment alpha {a_seg_f:.2g} has a MEAN delay much below "
               f"ln(1/alpha_seg) / KL(p || p0) new users (KL in nats per user); the delay is right-skewed, "
               f"so a median can sit a little below it.")
    out.append("")
    out.append(f"| true / declared | median (tol {tol:g}) | p90 (tol {tol:g}) | Wald thr/KL (tol {tol:g}) | "
               "median (tol 0) |")
    out.append("|---|---|---|---|---|")
    delay_rows: dict[float, float] = {}
    delay_ci: dict[float, tuple[float, float]] = {}
    for ratio, kmax in ((100, 200), (10, 2000), (3, 20000), (2, 40000), (1.5, 200000), (1.2, 1_000_000)):
        n_p = delay_paths if ratio >= 2 else max(200, delay_paths // 8)
        p_true = min(1.0, ratio * 0.01)
        d = first_crossing(rng, n_p, p0_def, p_true, kmax, thr_f)
        d0 = first_crossing(rng, n_p, 0.01, p_true, kmax, thr_f)
        delay_rows[ratio] = float(np.median(d))
        delay_ci[ratio] = median_ci(d)
        out.append(f"| {ratio}x | {fmt_users(np.median(d))} | {fmt_users(np.percentile(d, 90))} | "
                   f"{fmt_users(thr_f / kl_bern(p_true, p0_def))} | {fmt_users(np.median(d0))} |")
    out.append("")
    out.append("Per-user looks up to 2,000 users, then looks 1% apart (a delay past 2,000 is resolved to ~1%). "
               "Horizon: 10^6 users after the onset.")
    out.append("")
    out.append(f"Late onset after 10^6 healthy users at the declared fraction ({late_paths:,} paths; default "
               f"tolerance {tol:g}; healthy part in looks 1% apart, per-user looks after the onset):")
    out.append("")
    out.append("| p0 | onset | median users to alarm | max |")
    out.append("|---|---|---|---|")
    late = {}
    for p0, p in ((0.01, 1.0), (0.2, 1.0), (0.5, 1.0), (0.01, 0.02)):
        d = first_crossing(rng, late_paths, ep(p0), p, 100_000 if p < 1 else 500, thr_f, prefix=1_000_000,
                           prefix_p=p0)
        late[(p0, p)] = float(np.median(d))
        out.append(f"| {p0:.0%} | {p:.0%} | {fmt_users(np.median(d))} | {fmt_users(np.max(d))} |")
    out.append("")

    # 5. SRM
    d_srm = srm_boundary(srm_null_h, a_seg_s)
    bf_first, chi_first = srm_paths(rng, srm_null_paths, 0.5, srm_null_h, d_srm)
    out.append(f"### Sample ratio mismatch vs declared 50/50 (segment alpha {a_seg_s:.3g}), null: "
               f"{srm_null_paths:,} paths x {srm_null_h:,} users")
    out.append("")
    out.append("| test | false alarms | rate | 95% CI |")
    out.append("|---|---|---|---|")
    out.append(rate_row("Lindon-Malek mixture BF, k in {1e2,1e3,1e4} (ours)", int(np.isfinite(bf_first).sum()),
                        srm_null_paths))
    out.append(rate_row("naive chi-squared p<0.001 every look", int(np.isfinite(chi_first).sum()), srm_null_paths))
    out.append("")
    out.append(f"SRM detection delay in enrolled users, {srm_delay_paths:,} paths per split:")
    out.append("")
    out.append("| true split | ours median | ours p90 | naive chi-squared median |")
    out.append("|---|---|---|---|")
    for qq in (1.0, 0.6, 0.55):
        bf_d, chi_d = srm_paths(rng, srm_delay_paths, qq, srm_null_h, d_srm)
        out.append(f"| {round(qq * 100)}/{round((1 - qq) * 100)} | {fmt_users(np.median(bf_d))} | "
                   f"{fmt_users(np.percentile(bf_d, 90))} | {fmt_users(np.median(chi_d))} |")
    out.append("")
    table, worst_ssrm = ssrm_agreement(rng)
    out.append("Agreement with Optimizely ssrm-test (sequential p-values, same data):")
    out.append("")
    out.append(table)
    if worst_ssrm is not None:
        out.append("")
        out.append(f"Worst absolute difference: {worst_ssrm:.2e} "
                   f"({'<= 1e-9: agree' if worst_ssrm <= 1e-9 else 'DISAGREE'}).")
    out.append("")

    # 6. fleet
    out.append(f"### Fleet budget: {fleet_n:,} simulated null experiments (fraction at its alert level and a "
               "declared 50/50 split, both rules; p0 in {1%, 5%, 20%, 50%}; lifetimes log-uniform in 10^4..10^6 "
               "users; every alarm counted, each rule restarting in its next budget segment)")
    out.append("")
    out.append("| budget (false pages a month) | N | alpha = budget / N | false pages (whole lifetimes) | "
               "experiments with one | bound (N x alpha) |")
    out.append("|---|---|---|---|---|---|")
    for budget_f in (100.0, 1.0):
        a = budget.fleet_alpha(budget_f, fleet_n)
        pages, exps = fleet(rng, fleet_n, a)
        out.append(f"| {budget_f:g} | {fleet_n:,} | {a:.0e} | {pages} | {exps} | {fleet_n * a:g} |")
    out.append("")
    out.append("Each experiment's whole simulated lifetime is counted as if it fell in one month (conservative: "
               "the bound holds per month whatever the lifetimes).")
    out.append("")

    # targets
    out.append("### Targets")
    out.append("")
    out.append(f"- lifetime false alarms <= alpha at p0 in {{1%, 20%, 50%}} to 10^7 users: "
               f"{'met' if null_ok else 'MISSED'} (table 1: every resolvable rate below its bound)")
    out.append(f"- 0 false alarms in >= 1,000 ramp paths: {k_ramp} in {side_paths:,} "
               f"({'met' if k_ramp == 0 and side_paths >= 1000 else 'MISSED'})")
    if args.engine_ramps:
        out.append(f"- 0 false alarms in >= 1,000 ENGINE ramp paths: {er_fired} in {er_n:,} "
                   f"({'met' if er_fired == 0 and er_n >= 1000 else 'MISSED'})")
    out.append(f"- 100x in <= 5 users (median): {delay_rows[100]:.0f} ({'met' if delay_rows[100] <= 5 else 'MISSED'})")
    lo2, hi2 = delay_ci[2]
    out.append(f"- 2x in <= 3,000 (median) at the default tolerance {tol:g}: {delay_rows[2]:,.0f} "
               f"(95% CI of the median {lo2:,.0f}-{hi2:,.0f}; "
               f"{'met' if delay_rows[2] <= 3000 else 'MISSED'}; Wald's mean-delay bound thr/KL(2% || {p0_def:.2%}) is "
               f"{thr_f / kl_bern(0.02, p0_def):,.0f})")
    out.append(f"- 100% after 10^6 healthy users in <= 50 (median, p0 = 1%): {late[(0.01, 1.0)]:.0f} "
               f"({'met' if late[(0.01, 1.0)] <= 50 else 'MISSED'})")
    out.append("")
    out.append(f"Runtime: {time.perf_counter() - t0:.0f} s.")
    text = "\n".join(out)
    print(text)
    if args.write:
        from bench.stats_md import write_section

        write_section("Detection statistics", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
