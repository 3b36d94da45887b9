"""Broker restart (issue 8, item 3): Kafka goes away under a running worker and comes back.

Runs on a second, private broker (scripts/kafka.sh with its own ports and data directory), so
the shared broker other tests use is never interrupted. While the broker is down /readyz answers
503 (liveness, /healthz, stays 200: restarting the worker would not help); when it is back the
worker recovers by itself, with no restart, and detects again. Named to run last in the suite.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from harness import ROOT, Namespace, Receiver, Worker, free_port, now_ms, wait_until

from conftest import KafkaProducer2, create_topics, observed, worker_env


class Broker:
    def __init__(self, home) -> None:
        self.port, self.controller = free_port(), free_port()
        self.env = {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_CONTROLLER_PORT": str(self.controller),
                    "KAFKA_HOME_DIR": str(home), "KAFKA_HEAP": "-Xms128m -Xmx384m"}
        self.bootstrap = f"127.0.0.1:{self.port}"

    def run(self, cmd: str) -> None:
        r = subprocess.run([str(ROOT / "scripts" / "kafka.sh"), cmd], env=self.env, capture_output=True, text=True,
                           timeout=180)
        assert r.returncode == 0, f"kafka.sh {cmd}: {r.stdout}\n{r.stderr}"


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "kafka2")
    b.run("up")
    yield b
    b.run("down")


def test_worker_survives_a_broker_restart(broker, tmp_path):
    ns = Namespace()
    create_topics(ns, bootstrap=broker.bootstrap)
    rx = Receiver()
    env = worker_env(tmp_path, rx, DETECTOR_KAFKA_BOOTSTRAP=broker.bootstrap)
    w = Worker(ns, tmp_path, env, "broker-restart").start(wait_ready=True, timeout=90)
    try:
        p = KafkaProducer2(ns, bootstrap=broker.bootstrap)
        p.event({"experiment": "rel-before", "user_id": "u1", "variant": "a", "ts": now_ms()})
        p.flush()
        p.close()
        rx.wait_for(lambda b: b["experiment"] == "rel-before", timeout=30)

        t_down = time.time()
        broker.run("down")
        wait_until(lambda: w.get("/readyz")[0] == 503, 30, 0.5, "/readyz 503 while the broker is down")
        not_ready_after = time.time() - t_down
        assert w.get("/healthz")[0] == 200
        assert w.proc.poll() is None
        time.sleep(3)

        t_up = time.time()
        broker.run("up")
        wait_until(lambda: w.get("/readyz")[0] == 200, 90, 0.5, "/readyz 200 after the broker is back")
        ready_after = time.time() - t_up
        p = KafkaProducer2(ns, bootstrap=broker.bootstrap)
        p.event({"experiment": "rel-after", "user_id": "u2", "variant": "a", "ts": now_ms()})
        p.flush()
        p.close()
        rx.wait_for(lambda b: b["experiment"] == "rel-after", timeout=90)
        detected_after = time.time() - t_up
        assert (observed(w, "rel-before") or {}).get("events") == 1
        assert w.proc.poll() is None, "the worker exited instead of recovering"
        print(f"\nbroker restart: /readyz 503 {not_ready_after:.1f} s after the broker stopped; ready again "
              f"{ready_after:.1f} s and detecting {detected_after:.1f} s after it restarted")
    finally:
        w.stop()
