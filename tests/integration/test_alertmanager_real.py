"""Against a real Alertmanager (Debian `prometheus-alertmanager`) started on loopback by the test.

Checks that our pushed alert shows up in `GET /api/v2/alerts` with the expected
labels and the fingerprint we compute, that Alertmanager's own webhook body has
the shape our `alertmanager_webhook` sink imitates, that resolving works, and
that `amtool check-config` accepts config/alertmanager/alertmanager.yml.
In CI (CI=true) a missing binary is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from harness import free_port, require_binary

from detector.alerts.delivery import RetryPolicy, deliver
from detector.alerts.fingerprint import label_fingerprint_hex
from detector.alerts.lifecycle import Lifecycle, LifecycleConfig
from detector.alerts.sinks import build_sink
from detector.alerts.sinks.alertmanager_webhook import webhook_message
from detector.engine import Finding

pytestmark = pytest.mark.alertmanager

REPO = Path(__file__).resolve().parents[2]
AM_CONFIG = REPO / "config" / "alertmanager" / "alertmanager.yml"
POLICY = RetryPolicy(timeout_s=5, initial_backoff_s=0.1, max_backoff_s=0.5, deadline_s=10)



def test_amtool_check_config_accepts_our_config():
    amtool = require_binary("amtool", package="prometheus-alertmanager")
    result = subprocess.run([amtool, "check-config", str(AM_CONFIG)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.fixture
async def webhook_receiver():
    received: list[dict] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(orjson.loads(await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/alertmanager", handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield server, received
    finally:
        await server.close()


@pytest.fixture
async def alertmanager(tmp_path, webhook_receiver):
    binary = require_binary("prometheus-alertmanager", "alertmanager", package="prometheus-alertmanager")
    server, received = webhook_receiver
    config = yaml.safe_load(AM_CONFIG.read_text())  # our shipped config, pointed at the test receiver
    config["receivers"][0]["webhook_configs"][0]["url"] = str(server.make_url("/alertmanager"))
    config["route"]["group_wait"] = "1s"
    cfg_file = tmp_path / "alertmanager.yml"
    cfg_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(tmp_path / "alertmanager.log", "wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={cfg_file}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=info"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"alertmanager exited: {(tmp_path / 'alertmanager.log').read_text()}")
                try:
                    async with session.get(f"{url}/-/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("alertmanager did not become ready in 30 s")
                await asyncio.sleep(0.1)
        yield url, received
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def _alerts(session: aiohttp.ClientSession, url: str) -> list[dict]:
    async with session.get(f"{url}/api/v2/alerts") as resp:
        assert resp.status == 200
        return await resp.json()


async def test_pushed_alert_appears_with_our_labels_and_fingerprint(alertmanager):
    url, received = alertmanager
    now = int(time.time() * 1000)
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0))
    regs = {"subs-mvp-crm-qa": {"owner": "subscriptions", "labels": {"team": "crm"}}}
    finding = Finding(
        experiment="subs-mvp-crm-qa", rule="allowlist_breach", severity="critical",
        observed={"users": 255}, expected={"allowlist": 5}, first_offending_event_at=now - 2000,
        detected_at=now - 1000, blast_radius=250, sample_ids=("u-1", "u-2"), statistic=None,
        summary="250 users enrolled outside the allowlist",
    )
    [firing] = lc.on_findings([finding], now, registrations=regs)
    sink = build_sink("am", {"type": "alertmanager", "url": url}, {}, external_url="http://detector.test")
    expected_labels = {"alertname": "ExposureAnomaly", "experiment": "subs-mvp-crm-qa", "rule": "allowlist_breach",
                       "severity": "critical", "owner": "subscriptions", "team": "crm"}

    async with aiohttp.ClientSession() as session:
        out = await deliver(firing, sink, session, POLICY)
        assert out.status == "delivered" and out.http_status == 200, out

        ours = [a for a in await _alerts(session, url) if a["labels"].get("experiment") == "subs-mvp-crm-qa"]
        assert len(ours) == 1
        alert = ours[0]
        assert alert["labels"] == expected_labels
        assert alert["status"]["state"] == "active"
        assert alert["fingerprint"] == label_fingerprint_hex(expected_labels), "we fingerprint as Alertmanager does"
        assert alert["annotations"]["incident_id"] == firing.incident_id
        assert alert["generatorURL"] == f"http://detector.test/incidents/{firing.incident_id}"  # the console page

        # Alertmanager's own webhook (version "4") has exactly the shape our alertmanager_webhook sink sends.
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert received, "Alertmanager did not call the webhook receiver"
        real = received[0]
        ours_body = webhook_message(firing, receiver="exposure-webhook", incident_url=alert["generatorURL"])
        assert real["version"] == ours_body["version"] == "4"
        assert set(real) == set(ours_body)
        assert set(real["alerts"][0]) == set(ours_body["alerts"][0])
        assert real["alerts"][0]["fingerprint"] == ours_body["alerts"][0]["fingerprint"]
        assert real["alerts"][0]["labels"] == ours_body["alerts"][0]["labels"]
        assert real["groupLabels"] == ours_body["groupLabels"]
        assert real["groupKey"].endswith(ours_body["groupKey"])  # Alertmanager prefixes the route path

        # Resolve: endsAt set to the resolution time; Alertmanager drops it from the active listing.
        [resolved] = lc.resolve(firing.incident_id, "test", int(time.time() * 1000))
        out = await deliver(resolved, sink, session, POLICY)
        assert out.status == "delivered"
        after = [a for a in await _alerts(session, url) if a["labels"].get("experiment") == "subs-mvp-crm-qa"]
        assert after == []


async def test_alertmanager_rejects_garbage_and_we_do_not_retry(alertmanager):
    url, _ = alertmanager
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0))
    [n] = lc.on_findings([Finding(experiment="e", rule="unregistered", severity="warning", observed={},
                                  expected={}, first_offending_event_at=1, detected_at=2, blast_radius=1,
                                  sample_ids=(), statistic=None, summary="s")], int(time.time() * 1000))
    sink = build_sink("am", {"type": "alertmanager", "url": url + "/api/v2/silences"}, {})
    # /api/v2/silences/api/v2/alerts does not exist: a 404 is permanent
    out = await deliver(n, sink, policy=POLICY)
    assert out.status == "rejected" and out.attempts == 1 and out.http_status in (404, 405)
