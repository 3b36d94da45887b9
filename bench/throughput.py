"""Throughput: the Kafka client's limit, the detector worker end to end, and stock Faust, in one run.

    .venv/bin/python bench/throughput.py [--events 2000000] [--reps 3] [--faust-events 150000]

1. Creates a fresh prefixed topic set, writes 1,000 registrations (bench/workload.py) to
   `<prefix>exposure.expectations` and produces N ~155-byte JSON events keyed by experiment
   (Zipf traffic) to `<prefix>exposure.assignments`. Every contender reads these same records.
2. Repeats `--reps` times (median reported):
   (a) limit: a raw aiokafka `getmany` consumer (no group) that only JSON-decodes each value
       (`json.loads`; also msgspec into the event struct, reported as a second limit);
   (b) detector: `python -m detector worker` with a fresh DETECTOR_APP_ID; time from the first
       record consumed (its /metrics counter turns non-zero) until the group's committed offsets
       reach the end of every partition (polled with the admin client). Startup is excluded.
   (c) peer: bench/faust_peer.py, a stock Faust per-event agent doing the same counting, over
       the first `--faust-events` records (Faust runs ~9k events/s; all 2M would take minutes).
   Each contender runs in its own process; they never overlap.
3. Writes the `## Throughput` section of BENCHMARKS.md (and, with --scale-out, `## Scale-out`).

With `--mixes`, the same events are produced into three topic sets that differ only in their
registrations, and (a) plus (b) run on each in the same repetition (section
`## Throughput by registration mix`):
   registered   all 1,000 experiments registered (the workload above; ~0.5% breach);
   none         no registration at all: every experiment is `unregistered` (day one);
   breach-1pct  all registered, 1% of the experiments (10) in breach: the workload's five
                plus five more whose allowlist of 3 QA accounts every enrolled user breaches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload as wl  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


# ---------------------------------------------------------------------------------------------
# (a) the client's limit (runs in a subprocess: `throughput.py _raw TOPIC TOTAL DECODER`)
async def _raw(topic: str, total: int, decoder: str, partitions: int) -> dict:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    if decoder == "json":
        import json as _j

        dec = _j.loads
    else:
        from detector.events import _Wire
        import msgspec

        dec = msgspec.json.Decoder(_Wire).decode
    c = AIOKafkaConsumer(bootstrap_servers=wl.BOOTSTRAP, enable_auto_commit=False,
                         max_partition_fetch_bytes=4 << 20, fetch_max_bytes=32 << 20)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        n = 0
        t0 = None
        while n < total:
            got = await c.getmany(timeout_ms=1000, max_records=20000)
            if t0 is None and got:
                t0 = time.perf_counter()
                cpu0 = time.process_time()
            for recs in got.values():
                for r in recs:
                    dec(r.value)
                n += len(recs)
        dt = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        await c.stop()
    return {"events": n, "seconds": dt, "cpu_s": cpu}


def run_raw(topic: str, total: int, decoder: str, partitions: int) -> float:
    out = subprocess.run([PY, __file__, "_raw", topic, str(total), decoder, str(partitions)], capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    if out.returncode:
        raise RuntimeError(out.stderr)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"      ({r['cpu_s'] / r['seconds']:.0%} of a core, {r['cpu_s'] * 1e6 / r['events']:.1f} CPU-us/event, "
          f"load {os.getloadavg()[0]:.1f})", flush=True)
    return r["events"] / r["seconds"]


# ---------------------------------------------------------------------------------------------
# (b) the detector worker
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_worker(prefix: str, app_id: str, partitions: int, log_path: str, extra_env: dict | None = None):
    port = _free_port()
    env = {
        **os.environ,
        "DETECTOR_KAFKA_BOOTSTRAP": wl.BOOTSTRAP,
        "DETECTOR_APP_ID": app_id,
        "DETECTOR_TOPIC_PREFIX": prefix,
        "DETECTOR_PARTITIONS": str(partitions),
        "DETECTOR_EXPECTATIONS_DIR": "",
        "DETECTOR_ALERTING_CONFIG": "",
        "DETECTOR_WEB_PORT": str(port),
        "DETECTOR_DATA_DIR": tempfile.mkdtemp(prefix="bench-worker-"),
        "DETECTOR_LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    log = open(log_path, "ab")
    proc = subprocess.Popen([PY, "-m", "detector", "worker"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def stop_worker(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def consumed(url: str) -> float:
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("exposure_detector_events_consumed_total "):
                    return float(line.split()[1])
    except Exception:
        return -1.0
    return 0.0


async def committed_total(admin, group: str, topic: str) -> int:
    offs = await admin.list_consumer_group_offsets(group)
    return sum(o.offset for tp, o in offs.items() if tp.topic == topic and o.offset > 0)


async def measure_workers(prefix: str, partitions: int, total: int, n_workers: int, logdir: str,
                          extra_env: dict | None = None, timeout: float = 600) -> dict:
    """Start n workers in a fresh group; rate from first consumed record to all offsets committed."""
    from aiokafka.admin import AIOKafkaAdminClient

    app_id = f"bench-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}exposure.assignments"
    procs = [start_worker(prefix, app_id, partitions, os.path.join(logdir, f"{app_id}-{k}.log"), extra_env)
             for k in range(n_workers)]
    admin = AIOKafkaAdminClient(bootstrap_servers=wl.BOOTSTRAP)
    await admin.start()
    try:
        deadline = time.time() + timeout
        t_first = None
        loop = asyncio.get_running_loop()
        while t_first is None:
            if time.time() > deadline or any(p.poll() is not None for p, _ in procs):
                raise RuntimeError(f"workers did not start consuming; see {logdir}")
            vals = await asyncio.gather(*(loop.run_in_executor(None, consumed, u) for _, u in procs))
            if any(v > 0 for v in vals):
                t_first = time.perf_counter()
                cpu0 = sum(_cpu_s(p.pid) for p, _ in procs)
                break
            await asyncio.sleep(0.02)
        last_progress, last_done = time.time(), -1
        while True:
            done = await committed_total(admin, app_id, topic)
            if done != last_done:
                last_progress, last_done = time.time(), done
            elif time.time() - last_progress > 90 or any(p.poll() is not None for p, _ in procs):
                raise RuntimeError(f"workers stalled at {done}/{total} committed; see {logdir}")
            if done >= total:
                t_end = time.perf_counter()
                cpu1 = sum(_cpu_s(p.pid) for p, _ in procs)
                break
            if time.time() > deadline:
                raise RuntimeError(f"only {done}/{total} committed before the timeout")
            await asyncio.sleep(0.05)
        vals = await asyncio.gather(*(loop.run_in_executor(None, consumed, u) for _, u in procs))
        rss = [_rss_mb(p.pid) for p, _ in procs]
    finally:
        await admin.close()
        for p, _ in procs:
            stop_worker(p)
    return {"events": total, "seconds": t_end - t_first, "rate": total / (t_end - t_first),
            "cpu_s": cpu1 - cpu0,
            "consumed_per_worker": vals, "rss_mb": rss, "app_id": app_id}


def _cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process (from /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# ---------------------------------------------------------------------------------------------
# (c) stock Faust
def run_faust(topic: str, target: int, logdir: str) -> float:
    out = os.path.join(logdir, f"faust-{uuid.uuid4().hex[:6]}.json")
    env = {**os.environ, "PEER_TOPIC": topic, "PEER_TARGET": str(target), "PEER_OUT": out,
           "PEER_GROUP": f"faust-peer-{uuid.uuid4().hex[:8]}", "PEER_DATADIR": tempfile.mkdtemp(prefix="peer-")}
    with open(os.path.join(logdir, "faust-peer.log"), "ab") as log:
        p = subprocess.run([PY, os.path.join(ROOT, "bench", "faust_peer.py"), "worker", "-l", "warn"],
                           cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=900)
    with open(out) as f:
        r = json.load(f)
    return r["events"] / r["seconds"]


# ---------------------------------------------------------------------------------------------
async def prepare(n: int, partitions: int, seed: int = 7) -> tuple[str, int]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    await wl.create_topics(prefix, "bench-setup", partitions)
    await wl.produce(f"{prefix}exposure.expectations", wl.registration_records(), partitions)
    t = time.perf_counter()
    events = wl.generate(n, seed)
    gen = time.perf_counter() - t
    secs = await wl.produce(f"{prefix}exposure.assignments", wl.event_records(events), partitions)
    del events
    ends = await wl.end_offsets(f"{prefix}exposure.assignments", partitions)
    total = sum(ends.values())
    assert total == n, (total, n)
    print(f"produced {n} events into {prefix}exposure.assignments in {secs:.1f} s (generated in {gen:.1f} s)",
          flush=True)
    return prefix, total


MIXES = ("registered", "none", "breach-1pct")
EXTRA_BREACHES = (14, 25, 36, 47, 58)  # plain experiments made allowlist-only in the breach-1pct mix


def mix_registrations(mix: str) -> list[tuple[bytes, bytes]]:
    from detector.registration.model import parse_registration
    from detector.registration.records import encode_record

    if mix == "none":
        return []
    regs = [wl.registration(i) for i in range(wl.N_EXPERIMENTS)]
    if mix == "breach-1pct":
        for i in EXTRA_BREACHES:
            regs[i] = {"experiment": wl.exp_key(i), "owner": "bench", "severity": "warning",
                       "population": {"allowlist": [f"qa{i:04d}-{k:02d}" for k in range(3)]}}
    return [(r["experiment"].encode(), encode_record(parse_registration(r), "bench", "bench")) for r in regs]


async def prepare_mixes(n: int, partitions: int, seed: int = 7) -> dict[str, tuple[str, int]]:
    events = wl.generate(n, seed)
    out = {}
    for mix in MIXES:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        await wl.create_topics(prefix, "bench-setup", partitions)
        regs = mix_registrations(mix)
        if regs:
            await wl.produce(f"{prefix}exposure.expectations", regs, partitions)
        secs = await wl.produce(f"{prefix}exposure.assignments", wl.event_records(events), partitions)
        total = sum((await wl.end_offsets(f"{prefix}exposure.assignments", partitions)).values())
        assert total == n, (total, n)
        print(f"mix {mix}: {len(regs)} registrations, {n} events into {prefix}exposure.assignments in {secs:.1f} s",
              flush=True)
        out[mix] = (prefix, total)
    return out


def run_mixes(args, logdir: str) -> None:
    started = time.time()
    sets = asyncio.run(prepare_mixes(args.events, args.partitions))
    res: dict[str, list[float]] = {"raw": [], **{m: [] for m in MIXES}}
    ratios: dict[str, list[float]] = {m: [] for m in MIXES}
    cpu: dict[str, list[float]] = {m: [] for m in MIXES}  # worker CPU-us an event: steadier than rates under load
    try:
        for rep in range(args.reps):
            prefix, total = sets["registered"]
            res["raw"].append(run_raw(f"{prefix}exposure.assignments", total, "json", args.partitions))
            print(f"rep {rep}: (a) raw getmany + json.loads {res['raw'][-1]:>10,.0f} ev/s", flush=True)
            for mix in MIXES:
                prefix, total = sets[mix]
                r = asyncio.run(measure_workers(prefix, args.partitions, total, 1, logdir))
                res[mix].append(r["rate"])
                ratios[mix].append(r["rate"] / res["raw"][-1])
                cpu[mix].append(r["cpu_s"] * 1e6 / total)
                print(f"rep {rep}: (b) worker, {mix:<12} {r['rate']:>10,.0f} ev/s  b/a {ratios[mix][-1]:.2f} "
                      f"({r['cpu_s'] * 1e6 / total:.1f} CPU-us/event, RSS {r['rss_mb'][0]:.0f} MB, "
                      f"load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        if not args.keep:
            for prefix, _ in sets.values():
                asyncio.run(delete_prefix(prefix))
    med = {k: statistics.median(v) for k, v in res.items() if v}
    cmd = "`.venv/bin/python bench/throughput.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "") + "`"
    print(json.dumps({"median": med, "all": res, "b_over_a": ratios, "elapsed_s": time.time() - started}, indent=1))
    if not args.no_write:
        write_mixes(med, res, ratios, cpu, cmd, args, time.time() - started)


def write_mixes(med, res, ratios, cpu, cmd, args, elapsed) -> None:
    base = statistics.median(ratios["registered"])
    base_cpu = statistics.median(cpu["registered"])
    rows = ["| mix | (b) median events/s | b/a (median of the per-repetition ratios) | vs all registered | "
            "worker CPU-us/event (median) | runs (b) |",
            "|---|---:|---:|---:|---:|---|"]
    for mix in MIXES:
        r = statistics.median(ratios[mix])
        c = statistics.median(cpu[mix])
        rows.append(f"| {mix} | {med[mix]:,.0f} | {r:.2f} | {r / base - 1:+.0%} | {c:.1f} ({c / base_cpu:.2f}x) | "
                    f"{_fmt(res[mix])} |")
    body = f"""
Command: {cmd} (whole run {elapsed / 60:.1f} min).
Machine: {wl.machine()}; the box is shared with other work, so only the ratios measured in the
same repetition mean much (the load average of each run is printed by the script).

The same {args.events:,} events (the `## Throughput` workload: 1,000 experiments, Zipf traffic)
in three topic sets that differ only in their registrations; (a) raw aiokafka `getmany` +
`json.loads` ran once per repetition ({_fmt(res['raw'])} events/s), then the worker on each mix.
`none`: nothing registered, every experiment `unregistered` (the default notification policy
folds them into one digest; see README "Day one"). `breach-1pct`: ten experiments in breach (the
workload's five, plus five whose 3-account allowlist every enrolled user breaches).

{chr(10).join(rows)}

Goal (issue 16): each mix >= 0.65 x (a), none more than 15% below the all-registered mix.
Engine measured: {_engine_version()}.
"""
    wl.write_section("Throughput by registration mix", body)


def _engine_version() -> str:
    """The last commit that changed detector/engine/ (the none and breach mixes depend on it)."""
    try:
        out = subprocess.run(["git", "log", "-1", "--no-merges", "--format=%h %ad %s", "--date=short", "--", "detector/engine"],
                             cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return f"`{out}`" if out else "unknown (no git)"


async def delete_prefix(prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=wl.BOOTSTRAP)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_raw":
        print(json.dumps(asyncio.run(_raw(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--faust-events", type=int, default=150_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--skip", default="", help="comma list of contenders to skip: raw,msgspec,worker,faust")
    ap.add_argument("--scale-out", action="store_true", help="also run two workers in one group (## Scale-out)")
    ap.add_argument("--no-write", action="store_true", help="print only, do not touch BENCHMARKS.md")
    ap.add_argument("--keep", action="store_true", help="keep the bench topics")
    ap.add_argument("--reuse", default="", help="reuse the topics of an earlier --keep run (their prefix)")
    ap.add_argument("--mixes", action="store_true",
                    help="only (a) and (b) on three registration mixes: registered, none, breach-1pct")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    logdir = tempfile.mkdtemp(prefix="bench-throughput-")
    if args.mixes:
        run_mixes(args, logdir)
        return
    started = time.time()
    if args.reuse:
        prefix = args.reuse
        total = sum(asyncio.run(wl.end_offsets(f"{prefix}exposure.assignments", args.partitions)).values())
        args.keep = True
    else:
        prefix, total = asyncio.run(prepare(args.events, args.partitions))
    topic = f"{prefix}exposure.assignments"
    args.host = host_speed()
    print("host speed (CPU us/event, in-process): " + ", ".join(f"{k} {v:.2f}" for k, v in args.host.items()), flush=True)
    res: dict[str, list[float]] = {"raw": [], "msgspec": [], "worker": [], "faust": [], "two": []}
    try:
        for rep in range(args.reps):
            if "raw" not in skip:
                res["raw"].append(run_raw(topic, total, "json", args.partitions))
                print(f"rep {rep}: (a) raw getmany + json.loads      {res['raw'][-1]:>10,.0f} ev/s", flush=True)
            if "msgspec" not in skip:
                res["msgspec"].append(run_raw(topic, total, "msgspec", args.partitions))
                print(f"rep {rep}: (a') raw getmany + msgspec         {res['msgspec'][-1]:>10,.0f} ev/s", flush=True)
            if "worker" not in skip:
                r = asyncio.run(measure_workers(prefix, args.partitions, total, 1, logdir))
                res["worker"].append(r["rate"])
                args.cpu_us = getattr(args, "cpu_us", []) + [r["cpu_s"] * 1e6 / total]
                print(f"rep {rep}: (b) detector worker end to end     {r['rate']:>10,.0f} ev/s "
                      f"({r['seconds']:.2f} s, {r['cpu_s'] / r['seconds']:.0%} of a core, "
                      f"{r['cpu_s'] * 1e6 / total:.1f} CPU-us/event, RSS {r['rss_mb'][0]:.0f} MB, load {os.getloadavg()[0]:.1f})",
                      flush=True)
            if "faust" not in skip:
                res["faust"].append(run_faust(topic, min(args.faust_events, total), logdir))
                print(f"rep {rep}: (c) stock Faust per-event agent    {res['faust'][-1]:>10,.0f} ev/s", flush=True)
            if args.scale_out:
                r2 = asyncio.run(measure_workers(prefix, args.partitions, total, 2, logdir))
                res["two"].append(r2["rate"])
                args.splits = getattr(args, "splits", []) + [r2["consumed_per_worker"]]
                print(f"rep {rep}: two workers, one group             {r2['rate']:>10,.0f} ev/s "
                      f"(records per worker {r2['consumed_per_worker']})", flush=True)
    finally:
        if not args.keep:
            asyncio.run(delete_prefix(prefix))
    med = {k: statistics.median(v) for k, v in res.items() if v}
    elapsed = time.time() - started
    cmd = "`.venv/bin/python bench/throughput.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "") + "`"
    print(json.dumps({"median": med, "all": res, "elapsed_s": elapsed, "host_us": args.host}, indent=1))
    if args.no_write:
        return
    if {"raw", "worker", "faust"} <= med.keys():
        write_throughput(med, res, cmd, args, elapsed)
    if "two" in med and "worker" in med:
        write_scale_out(med, res, cmd, args)


def host_speed(n: int = 20_000) -> dict:
    """CPU us an event of json.loads and of msgspec's typed decode on this workload's events, in-process.

    A yardstick for the absolute numbers: (a) is fetch + json.loads, so a host where json.loads
    is 2x slower has a ~2x lower (a), whatever the code under test does.
    """
    import msgspec
    from detector.events import _Wire

    values = [v for _, v in wl.generate(n, seed=3)]
    out = {}
    for name, dec in (("json.loads", json.loads), ("msgspec", msgspec.json.Decoder(_Wire).decode)):
        best = float("inf")
        for _ in range(5):
            t = time.process_time()
            for v in values:
                dec(v)
            best = min(best, time.process_time() - t)
        out[name] = best / n * 1e6
    return out


def _fmt(v: list[float]) -> str:
    return ", ".join(f"{x:,.0f}" for x in v)


def write_throughput(med, res, cmd, args, elapsed) -> None:
    a, b, c = med["raw"], med["worker"], med["faust"]
    rows = [
        "| contender | median events/s | runs |",
        "|---|---:|---|",
        f"| (a) limit: raw aiokafka `getmany` + `json.loads` | {a:,.0f} | {_fmt(res['raw'])} |",
    ]
    if "msgspec" in med:
        rows.append(f"| (a') limit: raw aiokafka `getmany` + msgspec typed decode | {med['msgspec']:,.0f} | "
                    f"{_fmt(res['msgspec'])} |")
    rows += [
        f"| (b) detector worker, end to end (decode, engine, state checkpoints, commits) | {b:,.0f} | "
        f"{_fmt(res['worker'])} |",
        f"| (c) stock Faust per-event agent, same counting (first {min(args.faust_events, args.events):,} events) "
        f"| {c:,.0f} | {_fmt(res['faust'])} |",
    ]
    ratios = f"**b/a = {b / a:.2f}**, **b/c = {b / c:.1f}**"
    if "msgspec" in med:
        ratios += f", b/a' = {b / med['msgspec']:.2f}"
    cpu = statistics.median(getattr(args, "cpu_us", [0.0]))
    target = f"""
**Against the absolute target (b >= 150,000 events/s): not met on this host.** The issue's
figures were measured where (a) ran at ~230,000 events/s (raw `getmany` + `json.loads`
212-243k); 150k is 0.65 of that. Here (a) ran at {a:,.0f} events/s in this run, with
`json.loads` alone costing {args.host['json.loads']:.1f} us an event, so 150k is
{150_000 / a:.1f}x the limit the issue itself defines, on this host. The worker used a median
{cpu:.1f} CPU-us an event (one core; the broker shares the other); 150k needs 6.7 for
everything, and the raw client's fetch plus msgspec's typed decode alone, (a'), took
{1e6 / med.get('msgspec', float('nan')):.1f} us an event of wall time here."""
    body = f"""
Command: {cmd} (whole run {elapsed / 60:.1f} min).
Machine: {wl.machine()}.
Host speed, measured by the same run (CPU, in-process, this workload's events): `json.loads`
{args.host['json.loads']:.2f} us an event, msgspec typed decode {args.host['msgspec']:.2f} us.

Workload (`bench/workload.py`): {args.events:,} JSON assignment events (~155 bytes), keyed by
experiment, {args.partitions} partitions; 1,000 registered experiments with Zipf(1.0) traffic (top
experiment ~13% of events): allowlist + max_users QA experiments, 10% fraction rollouts with
enrolled=false traffic, two- and three-way variant splits, segment rules; breaches in a few
(allowlist, fraction, SRM, segment). Every contender reads the same pre-produced records, in
its own process, one at a time; median of {args.reps} repetitions.

{chr(10).join(rows)}

{ratios}
{target}

How each is timed: (a) from the first non-empty `getmany` to the last record decoded, no
consumer group; (b) a fresh `DETECTOR_APP_ID` per run; from the first record consumed (the
worker's `exposure_detector_events_consumed_total` turns non-zero, polled every 20 ms) until
the committed offsets of its group (polled with the admin client) reach the end of every
partition, so it includes the last state checkpoint and commit; worker startup, Faust's
rebalances and topic creation are excluded; (c) inside the Faust agent, first event to last.
CPU-us/event and the load average of each run are printed by the script (the box is shared:
other test runs raise the load; (a) moves most with it).
{PROFILE}"""
    wl.write_section("Throughput", body)


PROFILE = """
Where the worker's time goes (py-spy, 200 Hz, 15 s in the middle of a 2M-event run of this
workload, final code; shares of the samples where a thread was busy;
`.venv/bin/py-spy record -p PID -r 200 --format raw`; the worker's batches average ~11,000
records, one partition each):

| share of busy samples | what |
|---:|---|
| 37% | engine: `PartitionDetector.apply` -> `process_batch` over ~125 experiment groups a batch: user-set membership (id hashing, probe) 14%, splitting by experiment 2%, sequential tests 1%, exact -> sketch switches 1%, the rest of the rules' Python (per-event columns, first enrolled event per user, variant counts) 19% |
| 29% | decode: `events.decode_batch` (msgspec into `Assignment` structs 10%, the batch-level proofs that every record would pass the per-record decoder unchanged 19%) |
| 13% | fetch: aiokafka `getmany` (C record-batch iteration; ConsumerRecord construction is skipped) |
| 5% | Faust timers (the Prometheus refresh: `observe()` of the experiments that changed, every 2 s) |
| 3% | state checkpoints (`to_bytes` of every dirty experiment, produce) |
| 13% | the rest: the ingest loop, asyncio, producer and fetch I/O, Faust internals |

`bench/hotpath.py` runs the same decode + engine calls per partition batch without a broker
(CPU, best of 2-3 in one process): at 10,000-record batches decode 2.5-3.5 and engine 2.5-3.3
us an event (the spread is the shared host); at 2,500 the engine's per-call cost shows (4.1-4.3).

Removed on the way (each measured on the same data): registrations not loaded when the first
batches arrive (every event judged `unregistered`, every user stored as an offender: 8k -> 26k
events/s); a full state checkpoint every second (16 MB/s of sketches into the broker: 8k -> 16k);
per-record `decode` (~7-10 us/event: dict validation, a duplicate-key scan per record) -> batch
decode with the same results (~2 us); aiokafka's per-record `ConsumerRecord` (~8% of CPU); a
broker-liveness probe that fetched the metadata of every topic in the cluster every 2 s (~8%);
the cyclic garbage collector (~12% of CPU: decoded events are untracked msgspec structs, and the
worker freezes its startup heap and collects young objects every 50,000 allocations, not 700:
msgspec decode ~2.1 -> ~1.0 us an event); the broker's acks and the offset commit awaited on the
ingest loop (now in the background, one checkpoint in flight); ids hashed in pure Python or
~25 numpy calls for small groups (~3-4 us a key; now one XXH3 C call, ~0.3 us: engine in the
worker's shape 8.8 -> 7.4 us/event); two fingerprints per enrolled user (now one flagged entry);
the user set's `np.isin` and re-sort of new keys (distinct keys are now probed in sorted order),
Python-level per-event loops in `process_batch` (now `map`/`compress`/`setdefault`) and an HLL
updated per new enrolled user that never bound (the user set's count is the lower bound):
engine -15 to -22% in `bench/hotpath.py`, runs of both builds paired back to back (where their
unchanged decode times agreed: 5.12 -> 4.25 us an event at 2,500-record batches, 3.17 -> 2.47
at 10,000).
"""


def write_scale_out(med, res, cmd, args) -> None:
    one, two = med["worker"], med["two"]
    last = getattr(args, "splits", [[0, 0]])[-1]
    split = f"{max(last) / max(1, sum(last)):.0%} ({', '.join(f'{v:,.0f}' for v in last)})"
    per_rep = [t / o for t, o in zip(res["two"], res["worker"])]
    body = f"""
Command: {cmd}. Machine: {wl.machine()}.

| workers in one group (same {args.events:,} events, {args.partitions} partitions) | median events/s | runs |
|---|---:|---|
| 1 | {one:,.0f} | {_fmt(res['worker'])} |
| 2 | {two:,.0f} | {_fmt(res['two'])} |

Combined throughput of two workers: {two / one:.2f}x one worker.

Why not 2x here: the machine has 2 vCPUs for the two workers, the Kafka broker and the
benchmark's admin polling; one worker already uses ~90% of a core and the broker much of the
other, so a second worker takes CPU from the first and from the broker (repetition by
repetition, two workers made {min(per_rep):.2f}x to {max(per_rep):.2f}x one; earlier sessions saw 0.9x to 1.4x
with the box's load). The split is also uneven: partitions are assigned whole
and experiments keep their partition, so with Zipf traffic one worker got {split} of the records
and the group finishes when that one does. Partitions are the unit of
parallelism: with 8 partitions, up to 8 worker processes share the work (each experiment stays
in one partition, so each worker's state and rules are independent and nothing is shared between
workers). On separate machines (or more cores, one worker per core, broker elsewhere) throughput
adds up per worker until the broker's network or disk is the limit; the partition count bounds
the worker count, and a skewed key (one experiment with most of the traffic) bounds what its one
partition can do.
"""
    wl.write_section("Scale-out", body)


if __name__ == "__main__":
    main()
