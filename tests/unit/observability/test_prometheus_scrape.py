"""A real Prometheus (Debian package `prometheus`, on loopback) scrapes DetectorMetrics.

No Kafka here: the worker's aiohttp /metrics endpoint is served from a DetectorMetrics fed
engine-shaped observations directly. Checks that the per-experiment series arrive with the
right values, follow updates, and go stale once the experiment is removed.
"""

from __future__ import annotations

import asyncio
import copy
import socket
import subprocess
import time

import aiohttp
import pytest
from aiohttp import web

from detector.observability.metrics import DetectorMetrics

from obs_support import BREACHING, BREACHING_DATA, observation

pytestmark = pytest.mark.prometheus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def query(session, base, expr) -> list[dict]:
    async with session.get(f"{base}/api/v1/query", params={"query": expr}) as response:
        body = await response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


async def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for Prometheus")
        await asyncio.sleep(0.25)


async def test_prometheus_scrapes_per_experiment_series(prometheus_bin, tmp_path):
    metrics = DetectorMetrics()
    metrics.update_experiment("subs-mvp-crm-qa", BREACHING)
    app = web.Application()
    app.router.add_get("/metrics", metrics.make_aiohttp_handler())
    runner = web.AppRunner(app)
    await runner.setup()
    worker_port, prom_port = free_port(), free_port()
    site = web.TCPSite(runner, "127.0.0.1", worker_port)
    await site.start()

    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: exposure-detector\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{worker_port}']}}]\n")
    proc = subprocess.Popen(
        [prometheus_bin, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"))
    base = f"http://127.0.0.1:{prom_port}"
    selector = 'experiment="subs-mvp-crm-qa"'
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async def ready():
                try:
                    async with session.get(f"{base}/-/ready") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return proc.poll() is not None and pytest.fail(
                        (tmp_path / "prometheus.log").read_text()[-2000:])
            await wait_for(ready)

            async def enrolled():
                return await query(session, base, f"exposure_detector_experiment_enrolled_users{{{selector}}}")
            (series,) = await wait_for(enrolled)
            assert series["metric"]["job"] == "exposure-detector"
            assert float(series["value"][1]) == 40

            up = await query(session, base, 'up{job="exposure-detector"}')
            assert float(up[0]["value"][1]) == 1
            states = {r["metric"]["rule"]: float(r["value"][1]) for r in await query(
                session, base, f"exposure_detector_experiment_rule_state{{{selector}}}")}
            assert states == {"max_users_exceeded": 1, "fraction_exceeded": 1, "allowlist_breach": 0}
            (fraction,) = await query(session, base, f"exposure_detector_experiment_observed_fraction{{{selector}}}")
            assert float(fraction["value"][1]) == 0.4

            later = copy.deepcopy(BREACHING_DATA)
            later["observed"]["enrolled_users"] = 55
            metrics.update_experiment("subs-mvp-crm-qa", observation(later))

            async def updated():
                result = await enrolled()
                return result and float(result[0]["value"][1]) == 55
            await wait_for(updated)

            metrics.remove_experiment("subs-mvp-crm-qa")

            async def gone():
                return not await query(session, base, f"{{{selector}}}")
            await wait_for(gone)  # staleness markers: the series vanish at the next scrape
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        await runner.cleanup()
