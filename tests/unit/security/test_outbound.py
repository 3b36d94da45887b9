"""The kill switch: an operator-set host allowlist checked at registration and at send time (after
DNS), signed like every webhook; weak webhook secrets refused at start-up; bounded YAML aliases."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from detector.alerts.mitigation import mitigate
from detector.alerts.notification import BlastRadius, Notification
from detector.alerts.outbound import GuardedResolver, KillUrlPolicy
from detector.alerts.routing import parse_alerting
from detector.alerts.signing import WeakSecretError, generate_secret
from detector.registration.service import InMemoryRegistrationService
from detector.web.registrations_api import add_routes
from detector.web.middleware import secure_app

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "support"))
from harness import Receiver  # noqa: E402

TOKEN = "kill-switch-test-token"
HOSTILE = [
    "http://127.0.0.1:9092/", "http://localhost:9092/", "http://LOCALHOST./x", "http://foo.localhost/",
    "http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/computeMetadata/v1/",
    "http://[fd00:ec2::254]/latest/meta-data/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
    "http://0x7f000001/", "http://2130706433/", "http://0177.0.0.1/", "http://127.1/", "http://0/",
    "http://10.0.0.5/kill", "http://192.168.1.1/", "http://172.16.0.1/", "http://100.64.0.1/", "http://0.0.0.0/",
    "http://[fe80::1]/", "http://224.0.0.1/", "http://flags.evil.example/", "ftp://flags.example.com/",
]


def test_policy_refuses_loopback_link_local_private_metadata_and_numeric_tricks():
    policy = KillUrlPolicy(["flags.example.com", "*.kill.example.org", "203.0.113.7"])
    for url in HOSTILE:
        assert policy.url_problem(url), url
    for url in ("https://flags.example.com/kill", "https://a.kill.example.org/x", "http://203.0.113.7:8080/k"):
        assert policy.url_problem(url) is None, url
    # Nothing listed: no kill URL at all, with a message naming the setting.
    assert "DETECTOR_KILL_URL_ALLOWED_HOSTS" in KillUrlPolicy().url_problem("https://flags.example.com/kill")
    # A suffix does not reach metadata or local names; an exact entry or a network does.
    assert KillUrlPolicy(["*.internal"]).url_problem("http://metadata.google.internal/")
    assert KillUrlPolicy(["localhost"]).url_problem("http://localhost:8080/kill") is None
    assert KillUrlPolicy(["127.0.0.0/8"]).url_problem("http://127.0.0.1:8080/kill") is None
    assert KillUrlPolicy(["127.0.0.0/8"]).url_problem("http://0x7f000001/kill")  # still not a dotted quad


async def test_registration_refuses_a_hostile_kill_url_with_422():
    service = InMemoryRegistrationService(clock=lambda: 1_700_000_000.0)
    app = secure_app(api_token=TOKEN)
    add_routes(app.router, service, kill_url_problem=KillUrlPolicy(["flags.example.com"]).url_problem)
    async with TestClient(TestServer(app)) as c:
        for url in HOSTILE:
            body = {"owner": "o", "population": {"max_users": 1}, "mitigation": {"kill_url": url}}
            r = await c.put("/v1/expectations/kill-exp", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
            answer = await r.json()
            assert r.status == 422, (url, answer)
            assert answer["errors"][0]["field"] == "mitigation.kill_url"
        body = {"owner": "o", "population": {"max_users": 1}, "mitigation": {"kill_url": "https://flags.example.com/k"}}
        r = await c.put("/v1/expectations/kill-exp", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status == 201
    assert service.writes == 1


def _note() -> Notification:
    return Notification(
        id="inc_k:firing:1", incident_id="inc_k", kind="firing", status="firing", sequence=1, experiment="kill-exp",
        rule="max_users_exceeded", severity="critical", summary="s", owner="o", labels={},
        started_at=1_700_000_000_000, ended_at=None, first_offending_event_at=1_700_000_000_000,
        detected_at=1_700_000_000_000, observed={}, expected={}, blast_radius=BlastRadius(3, ("u1",)),
        created_at=1_700_000_000_000)


async def _session(policy, inner=None):
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=GuardedResolver(policy, inner),
                                                                use_dns_cache=False))


async def test_kill_switch_is_signed_and_checked_after_dns_resolution():
    from standardwebhooks.webhooks import Webhook

    from detector.alerts.signing import Signer

    rx = Receiver()
    secret = generate_secret()
    # "localhost" listed exactly: allowed, and it resolves to loopback through the real resolver.
    policy = KillUrlPolicy(["localhost"])
    url = rx.url.replace("127.0.0.1", "localhost")
    async with await _session(policy) as session:
        out = await mitigate(url, _note(), session, signer=Signer(secret), policy=policy)
    assert out.delivered, out
    [req] = rx.requests
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert Webhook(secret).verify(req["raw"], headers)["id"] == "inc_k:mitigation"

    # A name allowed by a suffix that resolves to a private address: refused at connection time.
    class Rebinding:  # what a hostile DNS answer looks like; the real resolver cannot be made to lie
        async def resolve(self, host, port=0, family=0):
            return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": 2, "proto": 0, "flags": 0}]

        async def close(self):
            pass

    policy = KillUrlPolicy(["*.example.com"])
    async with await _session(policy, Rebinding()) as session:
        out = await mitigate(f"http://flags.example.com:{rx.port}/hook", _note(), session, policy=policy)
    assert not out.delivered and "127.0.0.1" in out.error and "loopback" in out.error, out
    # The allowlist changed since the registration was written: not called at all.
    out = await mitigate(rx.url, _note(), None, policy=KillUrlPolicy(["flags.example.com"]))
    assert out.status == "rejected" and "DETECTOR_KILL_URL_ALLOWED_HOSTS" in out.error
    assert len(rx.attempts) == 1


async def test_courier_signs_the_kill_switch_with_the_webhook_secret():
    from standardwebhooks.webhooks import Webhook

    from detector.settings import Topics
    from detector.shell.courier import Courier

    rx = Receiver()
    secret = generate_secret()
    config = parse_alerting({}, {"DETECTOR_WEBHOOK_SECRET": secret})
    exp = type("E", (), {"kill_url": rx.url})()
    courier = Courier(config, lambda _: exp, Topics("t."), kill_policy=KillUrlPolicy(["127.0.0.1"]))
    sent = []

    async def send(topic, key, value):
        sent.append((topic, json.loads(value)))

    await courier.handle(_note().to_bytes(), {}, send)
    await courier.stop()
    [req] = rx.requests
    Webhook(secret).verify(req["raw"], {k.lower(): v for k, v in req["headers"].items()})
    assert sent[-1][1]["mitigation"]["status"] == "delivered"


@pytest.mark.parametrize("secret,message", [("whsec_QQ", "decodes to 1 bytes"), ("whsec_!!!notbase64", "not a valid"),
                                            ("whsec_" + "QUFB" * 7, "decodes to 21 bytes")])
def test_weak_or_malformed_webhook_secrets_are_refused_at_start_up(secret, message):
    env = {"DETECTOR_WEBHOOK_SECRET": secret, "DETECTOR_WEBHOOK_URLS": "http://127.0.0.1:9/hook"}
    with pytest.raises(WeakSecretError, match=message) as info:
        parse_alerting({}, env)
    assert "DETECTOR_WEBHOOK_SECRET" in str(info.value) and "generate_secret" in str(info.value)
    parse_alerting({}, {**env, "DETECTOR_WEBHOOK_SECRET": generate_secret()})


def test_yaml_alias_bomb_is_refused_before_anything_renders_it():
    from detector.registration.errors import RegistrationError
    from detector.registration.files import load_yaml_documents, yaml_load

    doc = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    prev = "a"
    for name in "bcdefghij":
        doc += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]\n"
        prev = name
    for bomb in (doc + f"? *{prev}\n: 1\n", doc + f"k: *{prev}\n", doc + "z: {a: 1, a: 2}\n"):
        started = time.perf_counter()
        with pytest.raises(Exception) as info:
            yaml_load(bomb)
        assert time.perf_counter() - started < 0.5
        assert "expands to more than" in str(info.value) and len(str(info.value)) < 400
        with pytest.raises(RegistrationError):
            load_yaml_documents(bomb)
    # A big honest document (100k allowlist entries) still loads.
    big = "allowlist: [" + ", ".join(f"u{i}" for i in range(100_000)) + "]\n"
    assert len(yaml_load(big)["allowlist"]) == 100_000
    with pytest.raises(Exception, match="recursive alias"):
        yaml_load("a: &a [*a]\n")


def test_worker_start_up_refuses_a_weak_secret_with_a_clear_message(tmp_path):
    import subprocess

    env = {"PATH": "/usr/bin:/bin", "DETECTOR_WEBHOOK_SECRET": "whsec_QQ", "DETECTOR_WEBHOOK_URLS": "http://127.0.0.1:9/h",
           "DETECTOR_KAFKA_BOOTSTRAP": "127.0.0.1:1", "DETECTOR_DATA_DIR": str(tmp_path), "DETECTOR_ALERTING_CONFIG": ""}
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run([sys.executable, "-m", "detector", "worker"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("detector worker: configuration error: DETECTOR_WEBHOOK_SECRET is too weak")
    assert "Traceback" not in proc.stderr


def test_web_app_refuses_a_bad_tokens_file_at_start_up(tmp_path):
    from detector.web.auth import AuthConfigError, load_tokens

    bad = tmp_path / "tokens.yaml"
    bad.write_text("tokens:\n  - {name: ops, token: short, scopes: [read]}\n")
    with pytest.raises(AuthConfigError, match="ops"):
        load_tokens("", str(bad))
    web.Application()  # nothing else to clean up
