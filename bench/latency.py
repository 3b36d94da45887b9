"""Latency under load: produce an offending event -> webhook received, while healthy traffic flows.

    .venv/bin/python bench/latency.py [--rate 50000] [--seconds 60] [--probe-every 0.5] [--group-wait 0.5]

A fresh prefixed topic set with the 1,000 registered experiments of bench/workload.py; one
`python -m detector worker` with DETECTOR_WEBHOOK_URLS pointing at a local aiohttp receiver
(tests/support/harness.py Receiver, its own thread and event loop). A producer sends healthy
workload events at `--rate` events/s (every 10 ms a pre-built batch per partition). Every
`--probe-every` s it sends one event of a new unregistered experiment (each probe opens its own
incident, so each is paged after the lifecycle's group_wait); latency = webhook arrival time -
time just before the probe was handed to the producer. Warm-up (first 10 s) excluded.
Writes the `## Latency under load` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "support"))
import throughput as tp  # noqa: E402
import workload as wl  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
    return xs[k]


async def run(args) -> dict:
    from aiokafka import AIOKafkaProducer
    from harness import Receiver

    receiver = Receiver()
    prefix = f"lat{uuid.uuid4().hex[:6]}."
    await wl.create_topics(prefix, "bench-setup", args.partitions)
    await wl.produce(f"{prefix}exposure.expectations", wl.registration_records(), args.partitions)
    topic = f"{prefix}exposure.assignments"
    # healthy events, cycled; ts is rewritten to "now" per tick so the events stay plausible
    pool = wl.generate(min(args.rate * 20, 600_000), seed=3)
    logdir = tempfile.mkdtemp(prefix="bench-latency-")
    env = {"DETECTOR_WEBHOOK_URLS": receiver.url, "DETECTOR_LOG_LEVEL": os.environ.get("LAT_LOG_LEVEL", "warning")}
    if args.group_wait is not None:
        env["DETECTOR_GROUP_WAIT"] = str(args.group_wait)
    app_id = f"lat-{uuid.uuid4().hex[:6]}"
    proc, url = tp.start_worker(prefix, app_id, args.partitions, os.path.join(logdir, "worker.log"), env)
    producer = AIOKafkaProducer(bootstrap_servers=wl.BOOTSTRAP, acks=1, linger_ms=0, max_batch_size=1 << 20)
    await producer.start()
    parts = {}
    keys = [wl.exp_key(i).encode() for i in range(wl.N_EXPERIMENTS)]
    for k in keys:
        parts[k] = wl.partition_of(k, args.partitions)
    sent_probes: dict[str, float] = {}
    produced = 0
    try:
        # wait for the worker to be consuming
        deadline = time.time() + 120
        while tp.consumed(url) < 0 and time.time() < deadline:
            await asyncio.sleep(0.2)
        tick = 0.01
        per_tick = max(1, int(args.rate * tick))
        i = 0
        t_start = time.perf_counter()
        next_probe = t_start + args.warmup
        probe_n = 0
        t_end = t_start + args.warmup + args.seconds
        rate_t0, rate_n0 = None, 0
        next_tick = t_start
        while True:
            now = time.perf_counter()
            if now >= t_end:
                break
            if now >= next_probe:
                name = f"lat-probe-{probe_n:05d}"
                probe_n += 1
                value = (f'{{"experiment":"{name}","user_id":"p{probe_n}","variant":"on","enrolled":true,'
                         f'"ts":{int(time.time() * 1000)}}}').encode()
                sent_probes[name] = time.time()
                await producer.send(topic, value=value, key=name.encode())
                next_probe += args.probe_every
            if rate_t0 is None and now >= t_start + args.warmup:
                rate_t0, rate_n0 = now, produced
            # one tick of healthy traffic, batched per partition
            batches = {}
            ts = int(time.time() * 1000)
            for _ in range(per_tick):
                idx, value = pool[i % len(pool)]
                i += 1
                k = keys[idx]
                p = parts[k]
                b = batches.get(p)
                if b is None:
                    b = batches[p] = producer.create_batch()
                if b.append(key=k, value=value, timestamp=ts) is None:
                    await producer.send_batch(b, topic, partition=p)
                    b = batches[p] = producer.create_batch()
                    b.append(key=k, value=value, timestamp=ts)
            for p, b in batches.items():
                await producer.send_batch(b, topic, partition=p)
            produced += per_tick
            next_tick += tick
            delay = next_tick - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # cannot keep up: do not accumulate debt, report the achieved rate
                next_tick = time.perf_counter()
        achieved = (produced - rate_n0) / (time.perf_counter() - rate_t0)
        await producer.flush()
        # let the last probes arrive
        await asyncio.sleep(max(3.0, 2 * (args.group_wait or 0.5)))
        ends = await wl.end_offsets(topic, args.partitions)
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=wl.BOOTSTRAP)
        await admin.start()
        lag = sum(ends.values()) - await tp.committed_total(admin, app_id, topic)
        await admin.close()
        batches = worker_batches(url)
    finally:
        await producer.stop()
        tp.stop_worker(proc)
        await tp.delete_prefix(prefix)
    got: dict[str, float] = {}
    with receiver._lock:
        for r in receiver.requests:
            b = r["body"]
            if isinstance(b, dict) and str(b.get("experiment", "")).startswith("lat-probe-") and b.get("status") == "firing":
                got.setdefault(b["experiment"], r["at"])
    lat = [got[k] - t for k, t in sent_probes.items() if k in got]
    with open(os.path.join(logdir, "probes.json"), "w") as f:  # per probe: sent, received (epoch s)
        json.dump({k: [t, got.get(k)] for k, t in sent_probes.items()}, f)
    return {"probes": len(sent_probes), "received": len(lat), "p50": pct(lat, 50), "p99": pct(lat, 99),
            "max": max(lat) if lat else float("nan"), "mean": statistics.mean(lat) if lat else float("nan"),
            "rate": achieved, "lag_at_end": lag, "logdir": logdir, **batches}


def worker_batches(url: str) -> dict:
    """Mean records and ms per partition batch over the whole run, from the worker's /metrics."""
    import urllib.request

    vals = {}
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            for name in ("batch_size_events", "batch_duration_seconds"):
                for part in ("sum", "count"):
                    if line.startswith(f"exposure_detector_{name}_{part} "):
                        vals[f"{name}_{part}"] = float(line.split()[1])
    n = vals.get("batch_size_events_count") or 1.0
    return {"batch_records": vals.get("batch_size_events_sum", 0.0) / n,
            "batch_ms": 1000 * vals.get("batch_duration_seconds_sum", 0.0) / (vals.get("batch_duration_seconds_count") or 1.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", default="50000,20000",
                    help="healthy events/s; a comma list runs each rate in turn (fresh topics and worker each)")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--probe-every", type=float, default=0.5)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--group-wait", type=float, default=None,
                    help="DETECTOR_GROUP_WAIT for the worker, seconds (default: the lifecycle's 0.5 s)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rates = [int(x) for x in str(args.rate).split(",") if x.strip()]
    results = []
    for rate in rates:
        args.rate = rate
        r = asyncio.run(run(args))
        r["target"] = rate
        print(r, flush=True)
        results.append(r)
    if args.no_write:
        return
    gw = "0.5 s (default)" if args.group_wait is None else f"{args.group_wait} s (DETECTOR_GROUP_WAIT)"
    cmd = "`.venv/bin/python bench/latency.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "") + "`"
    rows = "\n".join(
        f"| {r['target']:,} | {r['rate']:,.0f} | {r['lag_at_end']:,} | {r['probes']} | {r['received']} | "
        f"{r['p50'] * 1000:,.0f} ms | {r['p99'] * 1000:,.0f} ms | {r['max'] * 1000:,.0f} ms | "
        f"{r['batch_records']:,.0f} / {r['batch_ms']:.0f} ms |" for r in results)
    body = f"""
Command: {cmd}. Machine: {wl.machine()}.

Healthy traffic: the throughput workload (1,000 registered experiments) produced from the
benchmark process at the target rate (every 10 ms a pre-built batch per partition). One
offending event (a new unregistered experiment, so each opens its own incident) every
{args.probe_every} s for {args.seconds:.0f} s after {args.warmup:.0f} s of warm-up; lifecycle group_wait {gw}.
Latency = webhook received by a local aiohttp receiver - offending event handed to the producer.
Producer, worker and broker share the 2 vCPUs.

| target events/s | achieved events/s | consumer lag at end | probes | received | p50 | p99 | max | worker's mean partition batch (records / time) |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}

The latency floor is the lifecycle's group_wait (0.5 s by default) plus one fetch-and-batch
cycle. The ingest loop ticks the lifecycle and yields to the delivery agent (same event loop)
between partitions, and checkpoints one partition per turn with the broker's acks and the
commit in the background, so no stage holds the loop for long (before these changes, with
whole-state checkpoints awaited inline: p99 1.7 s at 20k/s, and 50k/s fell behind by ~1M
events). What is left above group_wait is queueing near what the box sustains (producer,
worker and broker share 2 vCPUs): in a 50k/s run before per-partition checkpoints (p50 1.7 s),
the worker's info log put produce -> notification queued at 1.25 s median (0.5 s of it
group_wait, the rest the consumer behind the producer's bursts) and queued -> received at
0.22 s (Faust's consumer of `exposure.alerts` and the delivery agent). Warm-up excluded: in a fresh worker's first ~10 s every experiment's plan is built and
~1,000 experiments move from exact sets to sketches; with a 10 s warm-up, probes in that window
took 2-6 s. Probes not received had not been processed when the run ended.
"""
    wl.write_section("Latency under load", body)


if __name__ == "__main__":
    main()
