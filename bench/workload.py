"""The benchmark workload, shared by bench/throughput.py, latency.py and memory.py.

1,000 experiments with Zipf(1.0) traffic, ~150-byte JSON assignment events keyed by
experiment. Every experiment is registered (so the engine does real rule work):
  i % 10 == 0  QA experiment: allowlist of 20 ids + max_users 20 (breach: i in BREACH_ALLOWLIST)
  i % 10 == 1  10% rollout: fraction 0.10, 50/50 split; 90% of events are enrolled=false
               (breach: i in BREACH_FRACTION enrolls 30%)
  i % 10 == 2  three-way split 34/33/33 (breach: i in BREACH_SRM is skewed 50/25/25)
  i % 10 == 3  segments {country: [US, CA]} + 50/50 (breach: i in BREACH_SEGMENT sends 2% BR)
  otherwise    50/50 split
Variants are sticky: a user's variant in an experiment is a fixed function of (seed,
experiment, user), as a real SDK's bucketing is, so a returning user re-logs the same variant
(the SRM breach skews the buckets, not the users' history). Enrolment, country and platform
are drawn per event, as before.
Deterministic for a given seed: every contender reads exactly the same records.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import subprocess
import time
from collections import defaultdict

import numpy as np

BOOTSTRAP = os.environ.get("DETECTOR_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
N_EXPERIMENTS = 1000
USER_POOL = 2_000_000
BREACH_ALLOWLIST = {10, 20}
BREACH_FRACTION = {1}
BREACH_SRM = {2}
BREACH_SEGMENT = {3}
COUNTRIES = ("US", "CA")
PLATFORMS = ("ios", "android", "web")


def exp_key(i: int) -> str:
    return f"bench-exp-{i:04d}"


def registration(i: int) -> dict:
    key = exp_key(i)
    kind = i % 10
    reg: dict = {"experiment": key, "owner": "bench", "severity": "warning", "alpha": 1e-4}
    if kind == 0:
        reg["population"] = {"allowlist": [f"qa{i:04d}-{k:02d}" for k in range(20)], "max_users": 20}
    elif kind == 1:
        reg["population"] = {"fraction": 0.10}
        reg["tolerance"] = 0.1
        reg["variants"] = {"control": 0.5, "treatment": 0.5}
    elif kind == 2:
        reg["variants"] = {"a": 0.34, "b": 0.33, "c": 0.33}
    elif kind == 3:
        reg["population"] = {"segments": {"country": list(COUNTRIES)}}
        reg["variants"] = {"control": 0.5, "treatment": 0.5}
    else:
        reg["variants"] = {"control": 0.5, "treatment": 0.5}
    return reg


def registration_records() -> list[tuple[bytes, bytes]]:
    from detector.registration.model import parse_registration
    from detector.registration.records import encode_record

    return [(exp_key(i).encode(), encode_record(parse_registration(registration(i)), "bench", "bench"))
            for i in range(N_EXPERIMENTS)]


def sticky_uniform(seed: int, exps: np.ndarray, users: np.ndarray) -> np.ndarray:
    """A uniform [0, 1) draw per (seed, experiment, user): the same pair always gets the same value.

    splitmix64 finaliser over the packed pair (users < 2**32, experiments < 2**20); vectorised."""
    with np.errstate(over="ignore"):
        x = (exps.astype(np.uint64) << np.uint64(32)) | users.astype(np.uint64)
        x = x + np.uint64((0x9E3779B97F4A7C15 * (seed + 1)) & 0xFFFFFFFFFFFFFFFF)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def generate(n: int, seed: int = 7, t0_ms: int | None = None) -> list[tuple[int, bytes]]:
    """n events as (experiment index, JSON bytes), in production order."""
    rng = np.random.default_rng(seed)
    t0 = int(time.time() * 1000) - 3_600_000 if t0_ms is None else t0_ms
    ranks = np.arange(1, N_EXPERIMENTS + 1, dtype=np.float64)
    w = 1.0 / ranks
    w /= w.sum()
    perm = rng.permutation(N_EXPERIMENTS)  # popularity rank -> experiment index (kinds mixed)
    exps = perm[rng.choice(N_EXPERIMENTS, size=n, p=w)]
    users = rng.integers(0, USER_POOL, size=n)
    u01 = rng.random(n)
    u02 = rng.random(n)
    plat = rng.integers(0, len(PLATFORMS), size=n)
    sticky = sticky_uniform(seed, exps, users)  # the variant bucket of (experiment, user)
    out: list[tuple[int, bytes]] = []
    app = out.append
    for k, (i, u, a, b, p, s) in enumerate(zip(exps.tolist(), users.tolist(), u01.tolist(), u02.tolist(), plat.tolist(),
                                                sticky.tolist())):
        kind = i % 10
        ts = t0 + k // 100
        uid = f"u{u:09d}"
        enrolled = True
        country = "US" if b < 0.7 else "CA"
        if kind == 0:
            if i in BREACH_ALLOWLIST and a < 0.05:
                uid = f"x{u % 50:09d}"  # up to 50 users outside the allowlist
            else:
                uid = f"qa{i:04d}-{u % 20:02d}"
            variant = "treatment"
        elif kind == 1:
            enrolled = a < (0.30 if i in BREACH_FRACTION else 0.10)
            variant = ("control" if s < 0.5 else "treatment") if enrolled else None
        elif kind == 2:
            cut = (0.5, 0.75) if i in BREACH_SRM else (0.34, 0.67)
            variant = "a" if s < cut[0] else "b" if s < cut[1] else "c"
        else:
            variant = "control" if s < 0.5 else "treatment"
            if kind == 3 and i in BREACH_SEGMENT and b > 0.98:
                country = "BR"
        v = "null" if variant is None else f'"{variant}"'
        en = "true" if enrolled else "false"
        app((i, (f'{{"experiment":"bench-exp-{i:04d}","user_id":"{uid}","variant":{v},"enrolled":{en},'
                 f'"ts":{ts},"attributes":{{"country":"{country}","platform":"{PLATFORMS[p]}"}}}}').encode()))
    return out


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default (Java) partitioner: murmur2 of the key."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


async def produce(topic: str, records, partitions: int, bootstrap: str = BOOTSTRAP) -> float:
    """Produce (key, value) pairs fast (pre-built batches per partition); returns seconds taken."""
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_batch_size=1 << 20,
                         max_request_size=8 << 20)
    await p.start()
    t = time.perf_counter()
    try:
        part_cache: dict[bytes, int] = {}
        batches = {}
        futs = []
        for key, value in records:
            part = part_cache.get(key)
            if part is None:
                part = part_cache[key] = partition_of(key, partitions)
            b = batches.get(part)
            if b is None:
                b = batches[part] = p.create_batch()
            if b.append(key=key, value=value, timestamp=None) is None:
                futs.append(await p.send_batch(b, topic, partition=part))
                b = batches[part] = p.create_batch()
                b.append(key=key, value=value, timestamp=None)
            if len(futs) > 64:
                await asyncio.gather(*futs)
                futs = []
        for part, b in batches.items():
            if b.record_count():
                futs.append(await p.send_batch(b, topic, partition=part))
        await asyncio.gather(*futs)
    finally:
        await p.stop()
    return time.perf_counter() - t


def event_records(events):
    for i, value in events:
        yield f"bench-exp-{i:04d}".encode(), value


async def create_topics(prefix: str, app_id: str, partitions: int) -> None:
    from detector.settings import Settings
    from detector.topics import ensure_topics

    await ensure_topics(Settings(topic_prefix=prefix, app_id=app_id, partitions=partitions, kafka_bootstrap=BOOTSTRAP))


async def end_offsets(topic: str, partitions: int, bootstrap: str = BOOTSTRAP) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        end = await c.end_offsets(tps)
        return {tp.partition: off for tp, off in end.items()}
    finally:
        await c.stop()


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.+)", f.read())
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(re.search(r"MemTotal:\s*(\d+)", f.read()).group(1))
            mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    return (f"{os.cpu_count()} vCPU ({cpu}){mem}, Linux {platform.release()}, Python {platform.python_version()}, "
            f"Kafka broker on the same machine")


def kafka_version() -> str:
    try:
        out = subprocess.run(["scripts/kafka.sh", "status"], capture_output=True, text=True, timeout=10).stdout
        return out.strip()
    except Exception:
        return ""


def write_section(heading: str, body: str, path: str = "BENCHMARKS.md") -> None:
    """Replace (or append) the `## heading` section of BENCHMARKS.md; other sections stay untouched."""
    title = "# Benchmarks\n\nNumbers measured by the scripts in `bench/`; each section is rewritten by its script.\n"
    text = open(path).read() if os.path.exists(path) else title
    block = f"## {heading}\n{body.rstrip()}\n\n"
    pat = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pat.search(text):
        text = pat.sub(lambda _m: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block
    with open(path, "w") as f:
        f.write(text.rstrip() + "\n")


def group_by_partition(topic_events):
    d = defaultdict(list)
    for k, v in topic_events:
        d[k].append(v)
    return d
