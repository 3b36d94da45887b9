"""Alert latency at low load: first offending event produced -> webhook received.

    .venv/bin/python bench/alert_latency.py [--incidents 30] [--gap 0.5] [--group-wait SECONDS]

Starts a real worker (``python -m detector worker``) against the local Kafka
(127.0.0.1:9092, ``scripts/kafka.sh up``) in an isolated topic namespace, with
``--incidents`` registered experiments (YAML at start, allowlist of one test user
each) and a real HTTP webhook receiver on loopback. Then, one experiment at a time:
take the time, produce ONE event of a user outside the allowlist, and wait for the
``allowlist_breach`` webhook; the latency is the receiver's arrival time minus the
time just before the produce call (same clock, same machine). ``--gap`` seconds pass
between incidents, so the detector is otherwise idle (low load). One warm-up
incident (first connection to the receiver, first partition fetch) is not counted.

The alerting config is the shipped config/alerting.yaml (group_wait 500ms) unless
``--group-wait`` overrides it (through DETECTOR_GROUP_WAIT). Prints one JSON line
with the summary; p99 is the nearest-rank percentile (with 30 samples: the maximum).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

from harness import Namespace, Producer, Receiver, Worker, now_ms, require_kafka  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--incidents", type=int, default=30)
    ap.add_argument("--gap", type=float, default=0.5, help="seconds between incidents")
    ap.add_argument("--group-wait", type=float, default=None, help="override group_wait (seconds)")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-incident timeout (seconds)")
    args = ap.parse_args(argv)

    require_kafka()
    ns = Namespace()
    receiver = Receiver()
    tmp = Path(tempfile.mkdtemp(prefix="alert-latency-"))
    exp_dir = tmp / "expectations"
    exp_dir.mkdir()
    names = [f"latency-{i:03d}" for i in range(args.incidents + 1)]  # [0] is the warm-up
    for name in names:
        (exp_dir / f"{name}.yaml").write_text(
            f"experiment: {name}\nowner: bench\nseverity: critical\npopulation:\n  allowlist: [qa-1]\n"
        )
    env = {"DETECTOR_WEBHOOK_URLS": receiver.url, "DETECTOR_EXPECTATIONS_DIR": str(exp_dir),
           "DETECTOR_RESOLVE_AFTER": "3600"}
    if args.group_wait is not None:
        env["DETECTOR_GROUP_WAIT"] = str(args.group_wait)
    worker = Worker(ns, tmp, env, "bench-worker")
    producer = Producer(ns)
    latencies: list[float] = []
    try:
        worker.start(timeout=90)
        for name in names:  # wait until the worker knows every registration
            deadline = time.time() + 30
            while worker.get(f"/v1/expectations/{name}")[0] != 200:
                if time.time() > deadline:
                    raise SystemExit(f"registration {name} not visible")
                time.sleep(0.05)
        for i, name in enumerate(names):
            time.sleep(args.gap)
            t0 = time.time()
            producer.send_events([{"experiment": name, "user_id": f"intruder-{i}", "variant": "treatment",
                                   "ts": now_ms()}])
            [body] = receiver.wait_for(lambda b, n=name: b.get("experiment") == n, timeout=args.timeout)
            assert body["rule"] == "allowlist_breach" and body["status"] == "firing", body
            with receiver._lock:
                arrived = next(r["at"] for r in receiver.requests if r["body"].get("id") == body["id"])
            if i > 0:
                latencies.append(arrived - t0)
    finally:
        producer.close()
        worker.stop()

    ms = [x * 1000 for x in latencies]
    summary = {
        "benchmark": "alert_latency_low_load",
        "incidents": len(ms),
        "gap_s": args.gap,
        "group_wait_s": args.group_wait if args.group_wait is not None else "0.5 (config/alerting.yaml)",
        "median_ms": round(statistics.median(ms), 1),
        "p90_ms": round(percentile(ms, 90), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "min_ms": round(min(ms), 1),
        "max_ms": round(max(ms), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "samples_ms": [round(x, 1) for x in ms],
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
