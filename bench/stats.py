"""Detection statistics benchmark: false alarms and detection delays, from one run.

    .venv/bin/python bench/stats.py [--quick] [--write] [--seed N]

Everything is simulated on distinct users with a look after EVERY eligible user (the
strictest schedule: a batch schedule's looks are a subset of these, so its false-alarm
rate can only be lower). Statistics are those of detector.engine.stats; the
per-look decision of each test is precomputed as a boundary on the count, which makes
10^4-10^5 paths cheap:
- fraction (p0 = 1%): mixture SPRT alarm iff S >= c(n); CUSUM via its recursion at the
  enrolment times (between enrolments it only decreases); naive one-sided binomial test at
  p < 0.001 at every look, on the same paths.
- SRM (50/50): Lindon-Malek mixture BF alarm iff |x - N/2| >= d(N); naive chi-squared
  p < 0.001 at every look, on the same paths.
- agreement of our closed-form sequential p-values with Optimizely's ssrm-test (run in its
  own venv, .venv-ssrm, because it needs numpy < 2).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import warnings

import numpy as np
from scipy import stats as sst
from scipy.special import gammaln, logsumexp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detector.engine import stats  # noqa: E402

P0 = 0.01
ALPHA = 1e-4
NAIVE_P = 1e-3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clopper_pearson(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    a = 1 - conf
    lo = 0.0 if k == 0 else sst.beta.ppf(a / 2, k, n - k + 1)
    hi = 1.0 if k == n else sst.beta.ppf(1 - a / 2, k + 1, n - k)
    return float(lo), float(hi)


# ---- fraction ----------------------------------------------------------------------------
def log_mixture_np(s: np.ndarray, n: np.ndarray, p0: float) -> np.ndarray:
    alts = stats.fraction_alternatives(p0)
    ls = np.stack([s * a + (n - s) * b for a, b in alts])
    return logsumexp(ls, axis=0) - math.log(len(alts))


def sprt_boundary(horizon: int, p0: float, alpha: float) -> np.ndarray:
    """c[n] = least S with ln M(S, n) >= ln(1/alpha) (n+1 if none), n = 0..horizon."""
    n = np.arange(horizon + 1, dtype=np.float64)
    lo = np.zeros(horizon + 1)
    hi = n + 1
    thr = math.log(1 / alpha)
    for _ in range(int(math.log2(horizon + 2)) + 2):
        mid = np.floor((lo + hi) / 2)
        ok = log_mixture_np(mid, n, p0) >= thr
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid + 1)
    return hi.astype(np.int64)


def binom_boundary(horizon: int, p0: float, p: float) -> np.ndarray:
    """Alarm iff S > b[n] (one-sided binomial test at level p)."""
    n = np.arange(horizon + 1)
    b = sst.binom.isf(p, np.maximum(n, 1), p0)
    return np.where(n == 0, 0, b).astype(np.int64)


def fraction_paths(rng, n_paths: int, p: float, k_max: int, horizon: int, c, bb, p0: float, h: float,
                   chunk: int = 10000):
    """First alarm position (eligible users) per path for SPRT, CUSUM, naive; inf if none <= horizon."""
    a, b = stats.cusum_params(p0)
    out = {"sprt": [], "cusum": [], "naive": []}
    for start in range(0, n_paths, chunk):
        m = min(chunk, n_paths - start)
        gaps = rng.geometric(p, size=(m, k_max)) if p < 1 else np.ones((m, k_max), np.int64)
        pos = np.cumsum(gaps, axis=1)  # position of the k-th enrolled user (1-based)
        k = np.arange(1, k_max + 1)[None, :]
        valid = pos <= horizon
        posc = np.minimum(pos, horizon)
        sprt_hit = valid & (k >= c[posc])
        naive_hit = valid & (k > bb[posc])
        w = np.zeros(m)
        cus_first = np.full(m, np.inf)
        for j in range(k_max):
            w = np.maximum(0.0, w + (gaps[:, j] - 1) * b) + a
            hit = (w >= h) & np.isinf(cus_first) & valid[:, j]
            cus_first[hit] = pos[hit, j]
        for name, hit in (("sprt", sprt_hit), ("naive", naive_hit)):
            any_ = hit.any(axis=1)
            first = np.where(any_, pos[np.arange(m), hit.argmax(axis=1)], np.inf)
            out[name].append(first)
        out["cusum"].append(cus_first)
    return {kk: np.concatenate(v) for kk, v in out.items()}


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


# ---- main -------------------------------------------------------------------------------
def fmt_users(v: float) -> str:
    return "not within horizon" if not math.isfinite(v) else f"{v:,.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run with few paths")
    ap.add_argument("--write", action="store_true", help="write the results into BENCHMARKS.md")
    ap.add_argument("--seed", type=int, default=20240601)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # percentiles over inf (no alarm)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    q = args.quick
    null_paths = 2000 if q else 60000
    null_h = 100_000
    delay_paths = 300 if q else 4000
    srm_null_paths = 1000 if q else 12000
    srm_null_h = 20_000
    srm_delay_paths = 300 if q else 4000
    h_cusum = stats.cusum_threshold(1e8)
    out: list[str] = []
    cmd = "`.venv/bin/python bench/stats.py" + (" --quick" if q else "") + f" --seed {args.seed} --write`"
    out.append(f"Command: {cmd} (one run, seed {args.seed}; {'QUICK smoke run' if q else 'full run'}). "
               "Looks after every eligible user (strictest schedule: any batch schedule looks at a "
               "subset of these points). Tests on distinct users. alpha = 1e-4 per experiment lifetime, "
               f"CUSUM h = ln(1e8) = {h_cusum:.2f}, naive tests at p < 0.001 re-run at every look.")
    out.append("")

    # fraction null
    horizon_d = 1_000_000
    c = sprt_boundary(horizon_d, P0, ALPHA)
    bb = binom_boundary(horizon_d, P0, NAIVE_P)
    kmax_null = int(null_h * P0 * 1.5) + 200
    r = fraction_paths(rng, null_paths, P0, kmax_null, null_h, c, bb, P0, h_cusum)
    comb = np.minimum(r["sprt"], r["cusum"])
    out.append(f"### Fraction rule, null (true fraction = declared = 1%), {null_paths:,} paths x "
               f"{null_h:,} eligible users")
    out.append("")
    out.append("| test | false alarms | rate | 95% CI (Clopper-Pearson) |")
    out.append("|---|---|---|---|")
    for name, v in (("mixture SPRT (ours)", r["sprt"]), ("CUSUM p1=2p0 (ours)", r["cusum"]),
                    ("ours combined (alarm if either)", comb), ("naive binomial p<0.001 every look", r["naive"])):
        k = int(np.isfinite(v).sum())
        lo, hi = clopper_pearson(k, null_paths)
        out.append(f"| {name} | {k} / {null_paths:,} | {k / null_paths:.2e} | [{lo:.1e}, {hi:.1e}] |")
    out.append("")

    # fraction delays
    out.append(f"### Fraction rule, detection delay in eligible users (declared 1%), {delay_paths:,} paths "
               "per ratio, looks after every user")
    out.append("")
    out.append("| true / declared | SPRT median | SPRT p90 | CUSUM median | CUSUM p90 | combined median "
               "| combined p90 | naive binomial median |")
    out.append("|---|---|---|---|---|---|---|---|")
    delay_rows = {}
    for ratio in (100, 10, 3, 2, 1.5, 1.2):
        p = min(1.0, ratio * P0)
        kmax = 6000 if ratio < 2 else 2000
        d = fraction_paths(rng, delay_paths, p, kmax, horizon_d, c, bb, P0, h_cusum, chunk=2000)
        cb = np.minimum(d["sprt"], d["cusum"])
        row = [np.percentile(x, q_) for x in (d["sprt"], d["cusum"], cb) for q_ in (50, 90)]
        delay_rows[ratio] = float(np.median(cb))
        out.append(f"| {ratio}x | " + " | ".join(fmt_users(v) for v in row)
                   + f" | {fmt_users(float(np.median(d['naive'])))} |")
    out.append("")
    out.append("Horizon for delays: 10^6 eligible users; 'not within horizon' = no alarm by then.")
    out.append("")

    # SRM
    d_srm = srm_boundary(srm_null_h, ALPHA)
    bf_first, chi_first = srm_paths(rng, srm_null_paths, 0.5, srm_null_h, d_srm)
    out.append(f"### Sample ratio mismatch vs declared 50/50, null: {srm_null_paths:,} paths x {srm_null_h:,} users")
    out.append("")
    out.append("| test | false alarms | rate | 95% CI |")
    out.append("|---|---|---|---|")
    for name, v in (("Lindon-Malek mixture BF, k in {1e2,1e3,1e4} (ours)", bf_first),
                    ("naive chi-squared p<0.001 every look", chi_first)):
        k = int(np.isfinite(v).sum())
        lo, hi = clopper_pearson(k, srm_null_paths)
        out.append(f"| {name} | {k} / {srm_null_paths:,} | {k / srm_null_paths:.2e} | [{lo:.1e}, {hi:.1e}] |")
    out.append("")
    out.append(f"### SRM detection delay in enrolled users (alpha 1e-4), {srm_delay_paths:,} paths per split")
    out.append("")
    out.append("| true split | ours median | ours p90 | naive chi-squared median |")
    out.append("|---|---|---|---|")
    for qq in (1.0, 0.6, 0.55):
        bf_d, chi_d = srm_paths(rng, srm_delay_paths, qq, srm_null_h, d_srm)
        out.append(f"| {round(qq * 100)}/{round((1 - qq) * 100)} | {fmt_users(np.median(bf_d))} | "
                   f"{fmt_users(np.percentile(bf_d, 90))} | {fmt_users(np.median(chi_d))} |")
    out.append("")

    # ssrm-test
    table, worst = ssrm_agreement(rng)
    out.append("### Agreement with Optimizely ssrm-test (sequential p-values, same data)")
    out.append("")
    out.append(table)
    if worst is not None:
        out.append("")
        out.append(f"Worst absolute difference: {worst:.2e} ({'<= 1e-9: agree' if worst <= 1e-9 else 'DISAGREE'}).")
    out.append("")

    # targets
    fa = int(np.isfinite(comb).sum()) / null_paths
    out.append("### Targets")
    out.append("")
    out.append(f"- false alarms <= 1e-4: measured {fa:.2e} over {null_paths:,} null paths "
               f"({'met' if fa <= ALPHA else 'MISSED'}; the CI upper bound is what {null_paths:,} paths can show)")
    out.append(f"- 100% vs declared 1% in <= 5 eligible users (median): {delay_rows[100]:.0f} "
               f"({'met' if delay_rows[100] <= 5 else 'MISSED'})")
    out.append(f"- 2x in <= 3,000 (median): {delay_rows[2]:,.0f} ({'met' if delay_rows[2] <= 3000 else 'MISSED'})")
    out.append("- allowlist breach on the first offending event: unit test "
               "`test_allowlist_fires_on_first_offending_event_with_exact_ts`")
    out.append("")
    out.append(f"Runtime: {time.perf_counter() - t0:.0f} s on this machine (2 vCPU).")
    text = "\n".join(out)
    print(text)
    if args.write:
        from bench.stats_md import write_section

        write_section("Detection statistics", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
