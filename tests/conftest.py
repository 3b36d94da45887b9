"""Shared fixtures: real Kafka, isolated detector namespaces, worker processes, webhook receivers."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from harness import Namespace, Producer, Receiver, Worker, require_kafka  # noqa: E402


@pytest.fixture(scope="session")
def kafka():
    require_kafka()


@pytest.fixture
def ns(kafka):
    n = Namespace()
    yield n
    n.delete_topics()


@pytest.fixture
def producer(ns):
    p = Producer(ns)
    yield p
    p.close()


@pytest.fixture
def receiver():
    return Receiver()


@pytest.fixture
def workers(ns, tmp_path):
    """Factory: workers(env=..., name=...) starts a worker; all are stopped at teardown."""
    started: list[Worker] = []

    def start(env: dict | None = None, name: str | None = None, wait_ready: bool = True) -> Worker:
        w = Worker(ns, tmp_path, env, name or f"worker{len(started)}")
        started.append(w)
        return w.start(wait_ready=wait_ready)

    yield start
    for w in started:
        w.stop()
    # Captured output is shown only when the test failed: the worker logs say why.
    for log in sorted(tmp_path.glob("*.log")):
        print(f"--- {log.name} (last 40 lines) ---")
        print("\n".join(log.read_text(errors="replace").splitlines()[-40:]))
