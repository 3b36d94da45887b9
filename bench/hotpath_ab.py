"""Two builds of the hot path in one process, in lockstep: is a change within X% of its base?

    .venv/bin/python bench/hotpath_ab.py --base REF [--new REF] [--events 1000000] [--reps 3]
                                         [--mix all|none|both]

Separate runs of bench/hotpath.py cannot resolve a few percent on a shared 2-core machine (the
unchanged decoder moves by as much as the engine between runs). This script exports both
builds' `detector` packages (`git archive`; `--new` defaults to the working tree), imports each
under its own copy of the package, and feeds every slice of the same events (bench/workload.py,
split per partition as bench/hotpath.py does) through `decode_batch` + `PartitionDetector.apply`
of build A then build B, alternating the order per slice, summing CPU time per build. Both see
the same load at the same moment, so their ratio is what the change costs. The builds must give
the same number of findings (asserted). Prints per repetition and the paired median new/base.
A module a build imports lazily (inside a function) resolves to the build loaded last, the new
one; the hot path's modules import at module level.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import workload as wl  # noqa: E402  (imports no detector module)

from hotpath import partition_slices  # noqa: E402, I001


def export(ref: str, into: str) -> str:
    """`detector/` of git `ref` under `into` (returns the directory to put on sys.path)."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", ref, "detector"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return into


def load(root: str) -> dict[str, Any]:
    """Import one build's entry points; its modules stay referenced after sys.modules is cleared."""
    for k in [k for k in sys.modules if k == "detector" or k.startswith("detector.")]:
        del sys.modules[k]
    sys.path.insert(0, root)
    try:
        ev = importlib.import_module("detector.events")
        pa = importlib.import_module("detector.ingest.partition")
        mo = importlib.import_module("detector.registration.model")
        assert ev.__file__ is not None and ev.__file__.startswith(root), (ev.__file__, root)
    finally:
        sys.path.remove(root)
    return {"decode": ev.decode_batch, "PD": pa.PartitionDetector, "parse": mo.parse_registration}


def lockstep(builds: dict[str, dict[str, Any]], slices, n_events: int, mix: str, reps: int) -> list[tuple[float, float]]:
    regs = {name: ({wl.exp_key(i): b["parse"](wl.registration(i)) for i in range(wl.N_EXPERIMENTS)}
                   if mix == "all" else {}) for name, b in builds.items()}
    ratios = []
    for rep in range(reps):
        parts: dict[str, dict[int, Any]] = {name: {} for name in builds}
        dec = dict.fromkeys(builds, 0.0)
        eng = dict.fromkeys(builds, 0.0)
        findings = dict.fromkeys(builds, 0)
        offset: dict[int, int] = {}
        for k, (p, values, stamps) in enumerate(slices):
            last = offset[p] = offset.get(p, -1) + len(values)
            for name in (("base", "new") if (k + rep) % 2 == 0 else ("new", "base")):
                b = builds[name]
                det = parts[name].get(p)
                if det is None:
                    det = parts[name][p] = b["PD"](p)
                c0 = time.process_time()
                events, _pos, _rejects = b["decode"](values, stamps)
                c1 = time.process_time()
                findings[name] += len(det.apply(events, None, regs[name].get, last_offset=last))
                c2 = time.process_time()
                dec[name] += c1 - c0
                eng[name] += c2 - c1
        assert findings["base"] == findings["new"], f"the builds disagree: {findings}"
        us = {name: (dec[name] / n_events * 1e6, eng[name] / n_events * 1e6) for name in builds}
        e = us["new"][1] / us["base"][1]
        t = sum(us["new"]) / sum(us["base"])
        ratios.append((e, t))
        print(f"[{mix}] rep {rep + 1}: base decode {us['base'][0]:.2f} engine {us['base'][1]:.2f} us/event; "
              f"new decode {us['new'][0]:.2f} engine {us['new'][1]:.2f}; new/base engine {e:.3f}, "
              f"decode+engine {t:.3f} ({findings['new']} findings)", flush=True)
    return ratios


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="git ref of the base build")
    ap.add_argument("--new", default=None, help="git ref of the new build (default: the working tree)")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=2500)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--mix", choices=("all", "none", "both"), default="both")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        roots = {}
        for name, ref in (("base", args.base), ("new", args.new)):
            if ref is None:
                roots[name] = ROOT
            else:
                os.makedirs(os.path.join(tmp, name))
                roots[name] = export(ref, os.path.join(tmp, name) + os.sep)
        builds = {name: load(root) for name, root in roots.items()}
        slices = partition_slices(args.events, args.chunk, args.partitions)
        print(f"base {args.base}, new {args.new or 'working tree'}: {args.events:,} events, {len(slices):,} slices, "
              f"{args.reps} lockstep repetitions; load average {os.getloadavg()[0]:.1f}", flush=True)
        for mix in (("all", "none") if args.mix == "both" else (args.mix,)):
            r = lockstep(builds, slices, args.events, mix, args.reps)
            print(f"[{mix}] paired median new/base: engine {statistics.median(x[0] for x in r):.3f}, "
                  f"decode+engine {statistics.median(x[1] for x in r):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
