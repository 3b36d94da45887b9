"""Helpers for the reliability and security tests (issue 8): all on the real broker.

Durations are shortened by configuration, never by fakes: the worker reads its lifecycle and
retry timings from an alerting file written here, and outage lengths come from environment
variables (`RELIABILITY_RECEIVER_OUTAGE_S`, default 20 s in CI; the issue's 5 minutes is
`RELIABILITY_RECEIVER_OUTAGE_S=300`).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from harness import BOOTSTRAP, Namespace, Receiver, Worker, wait_until

from detector.alerts.signing import generate_secret

TOKEN = "reliability-token-3f9c2e"
SECRET = generate_secret()


def alerting_file(tmp: Path, **lifecycle) -> str:
    """A minimal alerting config: short lifecycle and retry timings, no sinks but the env ones."""
    life = {"group_wait": "300ms", "group_interval": "1s", "repeat_interval": "4h",
            "resolve_quiet_period": "1h", "refresh_interval": None}
    life.update(lifecycle)
    doc = {
        "lifecycle": life,
        "delivery": {"timeout": "2s", "initial_backoff": "200ms", "multiplier": 1.5, "jitter": 0.2,
                     "max_backoff": "1s", "deadline": "1h"},
    }
    path = tmp / f"alerting-{len(list(tmp.glob('alerting-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def worker_env(tmp: Path, receiver: Receiver | None = None, **extra) -> dict[str, str]:
    lifecycle = extra.pop("lifecycle", {})
    env = {
        "DETECTOR_API_TOKEN": TOKEN,
        "DETECTOR_WEBHOOK_SECRET": SECRET,
        "DETECTOR_ALERTING_CONFIG": alerting_file(tmp, **lifecycle),
        "DETECTOR_CHECKPOINT_INTERVAL": "0.5",
        # A SIGKILLed worker keeps its partitions this long; the broker minimum, to restart fast.
        "DETECTOR_SESSION_TIMEOUT": "6",
    }
    if receiver is not None:
        env["DETECTOR_WEBHOOK_URLS"] = receiver.url
    env.update({k: str(v) for k, v in extra.items()})
    return env


def registration_dir(tmp: Path, *docs: dict) -> str:
    """A DETECTOR_EXPECTATIONS_DIR holding `docs`: the worker writes them to the topic at start."""
    d = tmp / f"expectations-{len(list(tmp.glob('expectations-*')))}"
    d.mkdir()
    for doc in docs:
        (d / f"{doc['experiment']}.yaml").write_text(yaml.safe_dump(doc))
    return str(d)


def put_registration(w: Worker, doc: dict) -> None:
    body = json.dumps(doc).encode()
    code, resp = w.request("PUT", f"/v1/expectations/{doc['experiment']}?confirm=true", body,
                           {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert code in (200, 201), (code, resp)
    wait_registered(w, doc["experiment"])


def wait_registered(w: Worker, experiment: str, timeout: float = 30) -> None:
    wait_until(lambda: w.get(f"/v1/expectations/{experiment}")[0] == 200, timeout, 0.1, f"registration of {experiment}")


def observed(w: Worker, experiment: str) -> dict | None:
    code, body = w.get(f"/v1/experiments/{experiment}")
    return body.get("observation") if code == 200 and isinstance(body, dict) else None


def metric(text: str, name: str, **labels) -> float:
    """Sum of the samples of `name` in a Prometheus text exposition whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def read_topic(ns: Namespace, name: str, *, min_records: int = 0, timeout: float = 30, bootstrap: str = BOOTSTRAP):
    """Every record of a topic from the beginning (waits until `min_records` are there)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_bytes=64 * 1024 * 1024,
                      max_partition_fetch_bytes=8 * 1024 * 1024)
    try:
        topic = ns.topic(name)
        parts = wait_until(lambda: c.partitions_for_topic(topic), 20, 0.2, f"topic {topic}")
        tps = [TopicPartition(topic, p) for p in parts]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        records = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            for recs in c.poll(500).values():
                records.extend(recs)
            end = c.end_offsets(tps)
            if len(records) >= min_records and all(c.position(tp) >= end[tp] for tp in tps):
                break
        return records
    finally:
        c.close()


def webhook_ids(receiver: Receiver) -> list[str]:
    return [r["headers"].get("webhook-id") or r["headers"].get("Webhook-Id") for r in receiver.requests]


class KafkaProducer2:
    """A producer that can send values up to 4 MB (the harness one stops at kafka-python's 1 MB)."""

    def __init__(self, ns: Namespace, bootstrap: str = BOOTSTRAP) -> None:
        from kafka import KafkaProducer

        self.ns = ns
        self.p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all", max_request_size=4 * 1024 * 1024)

    def send(self, value: bytes | None, key: bytes | None, topic: str = "exposure.assignments", timestamp_ms=None):
        return self.p.send(self.ns.topic(topic), key=key, value=value, timestamp_ms=timestamp_ms)

    def event(self, ev: dict, **kw):
        return self.send(json.dumps(ev).encode(), str(ev["experiment"]).encode(), **kw)

    def flush(self) -> None:
        self.p.flush()

    def close(self) -> None:
        self.p.close()


@pytest.fixture
def big_producer(ns):
    p = KafkaProducer2(ns)
    yield p
    p.close()


@pytest.fixture
def tmp(tmp_path):
    return tmp_path


def create_topics(ns: Namespace, bootstrap: str = BOOTSTRAP) -> None:
    """The namespace's topics, as the worker creates them (to produce before a worker starts)."""
    import asyncio

    from detector.settings import Settings
    from detector.topics import ensure_topics

    asyncio.run(ensure_topics(Settings(kafka_bootstrap=bootstrap, app_id=ns.app_id, topic_prefix=ns.prefix,
                                       partitions=ns.partitions)))
