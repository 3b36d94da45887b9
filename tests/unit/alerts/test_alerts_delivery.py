"""Delivery against a real HTTP server on 127.0.0.1: retries, Retry-After, deadline, no double sends."""

from __future__ import annotations

import socket
import time

import aiohttp
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from alerts_fixtures import finding
from detector.alerts.delivery import RetryPolicy, deliver, deliver_to_all, parse_retry_after
from detector.alerts.lifecycle import Lifecycle, LifecycleConfig
from detector.alerts.mitigation import mitigate
from detector.alerts.signing import Signer, generate_secret
from detector.alerts.sinks import build_sink

FAST = RetryPolicy(timeout_s=2, initial_backoff_s=0.01, multiplier=1.5, max_backoff_s=0.05, deadline_s=10)
SECRET = generate_secret()


def page(count=250):
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0))
    [n] = lc.on_findings([finding(count=count)], 1_700_000_000_000)
    return n


def webhook(url, **spec):
    env = {"DETECTOR_WEBHOOK_SECRET": SECRET, "HOOK_TOKEN": "t0ken"}
    return build_sink("hook", {"type": "webhook", "url": url, **spec}, env)


async def test_500_then_200_delivers_exactly_once_with_the_same_webhook_id(receiver):
    receiver.script = [500, 502, 503]
    n = page()
    out = await deliver(n, webhook(receiver.url()), policy=FAST)
    assert out.status == "delivered" and out.attempts == 4 and out.http_status == 200
    assert not out.dead_letter and out.notification_id == n.id and out.sink == "hook"
    assert [r["status"] for r in receiver.requests] == [500, 502, 503, 200]
    assert len([r for r in receiver.requests if r["status"] == 200]) == 1
    assert {r["headers"]["webhook-id"] for r in receiver.requests} == {n.id}
    for r in receiver.requests:  # every attempt is validly signed
        assert Webhook(SECRET).verify(r["body"], r["headers"])["id"] == n.id
    assert len({r["body"] for r in receiver.requests}) == 1, "same body on every attempt"


async def test_400_is_not_retried(receiver):
    receiver.script = [400]
    out = await deliver(page(), webhook(receiver.url()), policy=FAST)
    assert out.status == "rejected" and out.attempts == 1 and out.http_status == 400 and out.dead_letter
    assert len(receiver.requests) == 1


async def test_retry_after_is_honoured(receiver):
    receiver.script = [(429, {"Retry-After": "1"})]
    out = await deliver(page(), webhook(receiver.url()), policy=FAST)
    assert out.status == "delivered" and out.attempts == 2
    gap = receiver.requests[1]["at"] - receiver.requests[0]["at"]
    assert gap >= 0.95, f"second attempt after {gap:.3f}s, Retry-After said 1s"


async def test_deadline_dead_letters(receiver):
    receiver.default = 503
    policy = RetryPolicy(timeout_s=1, initial_backoff_s=0.02, max_backoff_s=0.05, deadline_s=0.4)
    t = time.monotonic()
    out = await deliver(page(), webhook(receiver.url()), policy=policy)
    assert out.status == "expired" and out.dead_letter and out.http_status == 503
    assert out.attempts >= 3 and len(receiver.requests) == out.attempts
    assert time.monotonic() - t < 1.5


async def test_retry_after_beyond_deadline_gives_up_now(receiver):
    receiver.script = [(503, {"Retry-After": "3600"})]
    out = await deliver(page(), webhook(receiver.url()), policy=FAST)
    assert out.status == "expired" and out.attempts == 1


async def test_network_errors_are_retried_until_the_deadline():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens here
    policy = RetryPolicy(timeout_s=1, initial_backoff_s=0.02, max_backoff_s=0.05, deadline_s=0.3)
    out = await deliver(page(), webhook(f"http://127.0.0.1:{port}/hook"), policy=policy)
    assert out.status == "expired" and out.http_status is None and out.attempts >= 2
    assert "Connect" in out.error or "connect" in out.error


async def test_timeout_is_retried(receiver):
    receiver.script = ["sleep:1.0"]
    policy = RetryPolicy(timeout_s=0.2, initial_backoff_s=0.01, max_backoff_s=0.05, deadline_s=10)
    out = await deliver(page(), webhook(receiver.url()), policy=policy)
    assert out.status == "delivered" and out.attempts == 2
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1


async def test_bearer_token_and_user_agent(receiver):
    await deliver(page(), webhook(receiver.url(), token_env="HOOK_TOKEN"), policy=FAST)
    headers = receiver.requests[0]["headers"]
    assert headers["Authorization"] == "Bearer t0ken"
    assert headers["User-Agent"].startswith("exposure-detector")


async def test_deliver_to_all_sinks_concurrently(receiver):
    sinks = [build_sink(k, {"type": k, "url": receiver.url(f"/{k}")}, {})
             for k in ("webhook", "alertmanager_webhook", "slack")]
    async with aiohttp.ClientSession() as session:
        outs = await deliver_to_all(page(), sinks, session, FAST)
    assert [o.status for o in outs] == ["delivered"] * 3
    assert sorted(r["path"] for r in receiver.requests) == ["/alertmanager_webhook", "/slack", "/webhook"]


async def test_mitigation_posts_once_signed(receiver):
    n = page()
    receiver.script = [500]
    out = await mitigate(receiver.url("/kill"), n, signer=Signer(SECRET))
    assert out.status == "failed" and out.attempts == 1 and len(receiver.requests) == 1
    req = receiver.requests[0]
    doc = Webhook(SECRET).verify(req["body"], req["headers"])
    assert doc["id"] == f"{n.incident_id}:mitigation" and doc["experiment"] == n.experiment
    ok = await mitigate(receiver.url("/kill"), n, signer=Signer(SECRET))
    assert ok.status == "delivered"


def test_backoff_schedule_is_alertmanager_like():
    policy = RetryPolicy()
    mid = policy.backoffs(lambda: 0.5)  # no jitter
    assert [round(next(mid), 4) for _ in range(4)] == [0.5, 0.75, 1.125, 1.6875]
    assert max(next(mid) for _ in range(30)) == 60.0
    low, high = policy.backoffs(lambda: 0.0), policy.backoffs(lambda: 1.0)
    assert next(low) == 0.25 and next(high) == 0.75


def test_retry_after_parsing():
    assert parse_retry_after("5", 0) == 5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470) == pytest.approx(10)
    assert parse_retry_after("soon", 0) is None and parse_retry_after(None, 0) is None


def test_policy_from_yaml():
    p = RetryPolicy.from_dict({"timeout": "5s", "initial_backoff": "100ms", "deadline": "1h", "multiplier": 2})
    assert (p.timeout_s, p.initial_backoff_s, p.deadline_s, p.multiplier) == (5, 0.1, 3600, 2.0)


async def test_pipeline_scenario_one_firing_and_one_resolved_per_sink(receiver):
    """Lifecycle -> routing -> delivery over real HTTP: the issue's scenario without Kafka."""
    from detector.alerts.routing import parse_alerting

    env = {"DETECTOR_WEBHOOK_URLS": receiver.url("/env-hook"), "DETECTOR_WEBHOOK_SECRET": SECRET,
           "PD": "key", "PD_URL": receiver.url("/pd")}
    cfg = parse_alerting({
        "lifecycle": {"group_wait": "200ms", "resolve_quiet_period": "5m"},
        "sinks": {
            "am-hook": {"type": "alertmanager_webhook", "url": receiver.url("/am-hook")},
            "slack": {"type": "slack", "url": receiver.url("/slack")},
            "pd": {"type": "pagerduty", "routing_key_env": "PD", "url_env": "PD_URL"},
            "am": {"type": "alertmanager", "url": receiver.url("/am")},
        },
    }, env)
    lc = Lifecycle(cfg.lifecycle)
    delivered: set[tuple[str, str]] = set()  # the courier's `deliveries` table, in miniature
    t0, now = 1_700_000_000_000, 1_700_000_000_000
    async with aiohttp.ClientSession() as session:
        async def send(notes):
            for n in notes:
                for s in cfg.sinks_for(n):
                    if (s.name, n.id) in delivered:
                        continue
                    out = await deliver(n, s, session, FAST)
                    delivered.add((s.name, n.id))
                    assert out.status == "delivered", out
        for batch in range(5):
            notes = lc.on_findings([finding(count=50 * (batch + 1), first_at=t0 - 10)], now)
            await send(notes + notes)  # a duplicate hand-off from the outbox is harmless
            now += 250
            await send(lc.tick(now))
        while now < t0 + 6 * 60_000:
            now += 5_000
            await send(lc.tick(now))
    for path in ("/env-hook", "/am-hook", "/slack", "/pd"):
        bodies = [orjson.loads(r["body"]) for r in receiver.at(path)]
        assert len(bodies) == 2, (path, len(bodies))
    statuses = [orjson.loads(r["body"])["status"] for r in receiver.at("/env-hook")]
    assert statuses == ["firing", "resolved"]
    assert [orjson.loads(r["body"])["event_action"] for r in receiver.at("/pd")] == ["trigger", "resolve"]
    am = [orjson.loads(r["body"])[0] for r in receiver.at("/api/v2/alerts") + receiver.at("/am/api/v2/alerts")]
    assert len(am) >= 3 and "endsAt" in am[-1] and all("endsAt" not in a for a in am[:-1])
    [inc] = lc.incidents()
    kinds = [e.kind for e in sorted(inc.timeline, key=lambda e: e.at)]
    assert kinds[:3] == ["first_offending_event", "detection", "notification_queued"]
