"""The worker's hot path without Kafka: decode + detection per partition batch, CPU us/event.

    .venv/bin/python bench/hotpath.py [--events 1000000] [--chunk 2500] [--partitions 8] [--reps 3]
                                      [--mix all|none|both]

Same events as bench/throughput.py (bench/workload.py: 1,000 experiments, Zipf traffic, the
same registrations), split by Kafka's partitioner, then fed in `--chunk`-record slices per
partition through exactly what `IngestService._process` runs per fetched partition:
`decode_batch` and `PartitionDetector.apply`. No broker, no event loop: the numbers change only
when this code changes (and with the host's speed, so compare two builds in one session, taking
the best of `--reps`). Use it to find where the worker's CPU goes; bench/throughput.py is the
end-to-end measurement. `--mix none` runs the same events with no experiment registered (day one:
every experiment `unregistered`); `--mix both` alternates the two in one process and prints none/all.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import workload as wl  # noqa: E402

from detector.events import decode_batch  # noqa: E402
from detector.ingest.partition import PartitionDetector  # noqa: E402
from detector.registration.model import parse_registration  # noqa: E402
from detector.worker import tune_gc  # noqa: E402


def partition_slices(n: int, chunk: int, partitions: int, seed: int = 7):
    """[(partition, values, record_ts)] in a round-robin order over partitions, as fetches arrive."""
    now = int(time.time() * 1000)
    by_part: dict[int, list[bytes]] = {}
    cache: dict[int, int] = {}
    for i, value in wl.generate(n, seed, t0_ms=now - 600_000):
        p = cache.get(i)
        if p is None:
            p = cache[i] = wl.partition_of(wl.exp_key(i).encode(), partitions)
        by_part.setdefault(p, []).append(value)
    out = []
    longest = max(len(v) for v in by_part.values())
    for lo in range(0, longest, chunk):
        for p in sorted(by_part):
            vals = by_part[p][lo:lo + chunk]
            if vals:
                out.append((p, vals, [now] * len(vals)))
    return out


def run_once(slices, registrations) -> dict:
    parts: dict[int, PartitionDetector] = {}
    lookup = registrations.get
    dec = eng = 0.0
    n = findings = 0
    offset: dict[int, int] = {}
    for p, values, stamps in slices:
        det = parts.get(p)
        if det is None:
            det = parts[p] = PartitionDetector(p)
        c0 = time.process_time()
        events, _positions, rejects = decode_batch(values, stamps)
        c1 = time.process_time()
        last = offset[p] = offset.get(p, -1) + len(values)
        findings += len(det.apply(events, None, lookup, last_offset=last))
        c2 = time.process_time()
        dec += c1 - c0
        eng += c2 - c1
        n += len(values)
        assert not rejects
    return {"events": n, "decode_us": dec / n * 1e6, "engine_us": eng / n * 1e6, "findings": findings}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--chunk", type=int, default=2500, help="records per partition batch (~max batch / partitions)")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--mix", choices=("all", "none", "both"), default="all",
                    help="experiments registered: all (default), none, or both alternately")
    args = ap.parse_args()
    mixes = {"all": {wl.exp_key(i): parse_registration(wl.registration(i)) for i in range(wl.N_EXPERIMENTS)},
             "none": {}}
    names = ["all", "none"] if args.mix == "both" else [args.mix]
    slices = partition_slices(args.events, args.chunk, args.partitions)
    tune_gc()  # as the worker does
    runs: dict[str, list[dict]] = {m: [] for m in names}
    for _ in range(args.reps):
        for m in names:
            runs[m].append(run_once(slices, mixes[m]))
    best = {}
    for m in names:
        b = best[m] = min(runs[m], key=lambda r: r["decode_us"] + r["engine_us"])
        print(f"[{m} registered] {b['events']:,} events in {len(slices):,} partition batches of <= {args.chunk}; "
              f"best of {args.reps}: decode {b['decode_us']:.2f} + engine {b['engine_us']:.2f} = "
              f"{b['decode_us'] + b['engine_us']:.2f} CPU-us/event ({b['findings']} findings)")
        for r in runs[m]:
            print(f"  run: decode {r['decode_us']:.2f}, engine {r['engine_us']:.2f}")
    if len(names) == 2:
        a, n = best["all"], best["none"]
        print(f"none/all: engine {n['engine_us'] / a['engine_us']:.3f}, "
              f"decode + engine {(n['decode_us'] + n['engine_us']) / (a['decode_us'] + a['engine_us']):.3f}")


if __name__ == "__main__":
    main()
