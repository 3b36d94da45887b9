"""Real components for integration tests: the local Kafka, worker processes, a webhook receiver.

Every test gets its own topic prefix and app id, so tests share one broker without
seeing each other's events. Nothing here fakes Kafka: a test that uses these
fails when the broker is not there.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = os.environ.get("DETECTOR_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_kafka() -> None:
    """Fail (never skip) when the broker is not reachable: these tests exist to use it."""
    from kafka import KafkaAdminClient

    try:
        KafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=5000).close()
    except Exception as exc:  # pragma: no cover - environment problem, reported plainly
        raise RuntimeError(f"Kafka is not reachable at {BOOTSTRAP} (run `make kafka-up`): {exc}") from exc


def require_binary(*names: str, package: str) -> str:
    """Path of a Debian-packaged peer (prometheus, promtool, alertmanager, amtool).

    Missing: fail under CI=true (CI installs it, so absence is a bug), skip elsewhere.
    """
    import shutil

    import pytest

    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
        if found:
            return found
    message = f"{' or '.join(names)} not found: apt-get install -y {package}"
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (required when CI=true)")
    pytest.skip(message)


HARNESS_TOKEN = "harness-token-5b2f9e0c41"

class Peer:
    """A real peer binary (Prometheus, Alertmanager) on loopback, logging to a file, ready at /-/ready."""

    def __init__(self, args: list[str], log_path: Path, url: str, what: str) -> None:
        self.url, self.log_path = url, log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)

        def ready():
            assert self.proc.poll() is None, log_path.read_text()
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        try:
            wait_until(ready, 30, 0.1, f"{what} ready")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def start_prometheus(targets: list[str], tmp: Path) -> Peer:
    """A real Prometheus (Debian package) on a free loopback port, scraping `targets` every second."""
    import yaml

    binary = require_binary("prometheus", package="prometheus")
    port = free_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "exposure-detector", "metrics_path": "/metrics",
                            "scrape_interval": "1s", "scrape_timeout": "900ms",
                            "static_configs": [{"targets": list(targets)}]}],
    }))
    return Peer(
        [binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        tmp / "prometheus.log", f"http://127.0.0.1:{port}", "prometheus",
    )


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class Namespace:
    """An isolated detector deployment on the shared broker: its own topics and groups."""

    def __init__(self, partitions: int = 4) -> None:
        tag = uuid.uuid4().hex[:8]
        self.prefix = f"t{tag}."
        self.app_id = f"detector-{tag}"
        self.partitions = partitions

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def delete_topics(self, timeout: float = 15.0) -> None:
        """Delete this namespace's topics (its prefix, and Faust's `<app id>-...` topics).

        Best effort at teardown, so that a long-lived local broker does not pile up thousands
        of test topics; a broker that is away (a test stopped it) is not an error here.
        """
        import asyncio

        from aiokafka.admin import AIOKafkaAdminClient

        async def run() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=int(timeout * 1000))
            await admin.start()
            try:
                names = [t for t in await admin.list_topics()
                         if t.startswith(self.prefix) or t.startswith(self.app_id + "-")]
                if names:
                    await admin.delete_topics(names)
            finally:
                await admin.close()

        try:
            asyncio.run(asyncio.wait_for(run(), timeout))
        except Exception:
            pass

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "DETECTOR_KAFKA_BOOTSTRAP": BOOTSTRAP,
            "DETECTOR_APP_ID": self.app_id,
            "DETECTOR_TOPIC_PREFIX": self.prefix,
            "DETECTOR_PARTITIONS": str(self.partitions),
            # Reads need a token (the `read` scope); tests that set their own keep theirs.
            "DETECTOR_API_TOKEN": HARNESS_TOKEN,
            "DETECTOR_EXPECTATIONS_DIR": "",
            "DETECTOR_ALERTING_CONFIG": "",
            "DETECTOR_LOG_LEVEL": "info",
            # Most tests follow one experiment's incident, so `unregistered` pages on its own here;
            # the day-one test (tests/e2e/test_day_one.py) runs the default digest.
            "DETECTOR_UNREGISTERED": "page",
            # Workers of one namespace form a fleet: their hops are signed with this secret (tests
            # of a worker without it, or with another one, set their own).
            "DETECTOR_FLEET_SECRET": "harness-fleet-secret-7d1c03aa",
        }
        env.update(extra)
        return env


class Worker:
    """`python -m detector worker` as a subprocess, with its log in a file."""

    def __init__(self, ns: Namespace, tmp: Path, env: dict[str, str] | None = None, name: str = "worker") -> None:
        self.ns = ns
        self.port = free_port()
        self.log_path = tmp / f"{name}.log"
        self.data_dir = tmp / f"{name}-data"
        self.env = {**os.environ, **ns.env(DETECTOR_WEB_PORT=str(self.port), DETECTOR_DATA_DIR=str(self.data_dir)), **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True, timeout: float = 60) -> "Worker":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "detector", "worker"], cwd=ROOT, env=self.env,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            code, body = self.get("/readyz")
            return code == 200 and body.get("partitions")

        try:
            wait_until(ready, timeout, 0.2, "worker /readyz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker log ---\n{self.tail()}") from None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, _maybe_json(raw)
        except urllib.error.HTTPError as err:
            return err.code, _maybe_json(err.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, {}

    def get(self, path: str, token: str | None = "worker"):
        """GET with the worker's own DETECTOR_API_TOKEN (token="worker"), another token, or none (None)."""
        token = self.env.get("DETECTOR_API_TOKEN") if token == "worker" else token
        return self.request("GET", path, None, {"Authorization": f"Bearer {token}"} if token else {})

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"


def _maybe_json(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


class Producer:
    """Produces assignment events keyed by experiment (the contract's partitioning)."""

    def __init__(self, ns: Namespace) -> None:
        from kafka import KafkaProducer

        self.ns = ns
        self.p = KafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5, acks="all")

    def send_events(self, events: Iterable[dict], topic: str = "exposure.assignments") -> int:
        n = 0
        for ev in events:
            key = str(ev.get("experiment", "")).encode() if isinstance(ev, dict) else None
            value = ev if isinstance(ev, bytes) else json.dumps(ev).encode()
            self.p.send(self.ns.topic(topic), key=key, value=value)
            n += 1
        self.p.flush()
        return n

    def send_raw(self, value: bytes | None, key: bytes | None = b"raw", topic: str = "exposure.assignments") -> None:
        self.p.send(self.ns.topic(topic), key=key, value=value)
        self.p.flush()

    def close(self) -> None:
        self.p.close()


def now_ms() -> int:
    return int(time.time() * 1000)


class Receiver:
    """A real HTTP webhook receiver on loopback (aiohttp in a thread).

    `script` decides each answer: a callable (request_number) -> status; default 200.
    Every request is recorded with its headers and JSON body.
    """

    def __init__(self, script: Callable[[int], int] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.script = script or (lambda i: 200)
        self.requests: list[dict] = []  # accepted (2xx) requests
        self.attempts: list[dict] = []  # every request
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _serve(self) -> None:
        import asyncio

        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            raw = await request.read()
            rec = {"path": request.path, "headers": dict(request.headers), "raw": raw, "body": _maybe_json(raw), "at": time.time()}
            with self._lock:
                i = len(self.attempts)
                self.attempts.append(rec)
                status = self.script(i)
                if 200 <= status < 300:
                    self.requests.append(rec)
            return web.Response(status=status, text="ok" if status < 300 else "unavailable")

        async def main():
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._ready.set()
            while True:
                await asyncio.sleep(3600)

        asyncio.run(main())

    def bodies(self, pred: Callable[[dict], bool] = lambda b: True) -> list[dict]:
        with self._lock:
            return [r["body"] for r in self.requests if isinstance(r["body"], dict) and pred(r["body"])]

    def wait_for(self, pred: Callable[[dict], bool], count: int = 1, timeout: float = 30) -> list[dict]:
        return wait_until(lambda: (b := self.bodies(pred)) and len(b) >= count and b, timeout, 0.05, "webhook")
