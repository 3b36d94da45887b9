"""Security (issue 8, item 6) on a running worker.

Body limit (413), bearer-token auth on writes (401; the compare is `hmac.compare_digest`, checked
in the code below), Standard Webhooks signatures (verified with the reference library), no user
ids in metric labels or INFO logs, outbound URLs only from configuration (an event full of URLs
makes no request to them), and the dependency audit script that CI runs.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness import ROOT, Receiver, now_ms, wait_until

from conftest import SECRET, TOKEN, KafkaProducer2, observed, put_registration, worker_env

REG = {"schema_version": 1, "experiment": "rel-sec", "owner": "reliability",
       "population": {"allowlist": ["sec-allowed-1"], "max_users": 2}, "severity": "critical"}


def _put(w, body: bytes, token: str | None, scheme: str = "Bearer", ctype="application/json", exp="rel-sec"):
    headers = {"Content-Type": ctype}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    return w.request("PUT", f"/v1/expectations/{exp}", body, headers)


def test_http_writes_need_the_token_and_bodies_are_limited(workers, tmp_path):
    w = workers(env=worker_env(tmp_path), name="sec-http")
    body = json.dumps(REG).encode()
    for token, scheme in ((None, "Bearer"), ("", "Bearer"), ("wrong", "Bearer"), (TOKEN[:-1], "Bearer"),
                          (TOKEN + "x", "Bearer"), (TOKEN, "Basic"), (TOKEN.upper(), "Bearer")):
        code, resp = _put(w, body, token, scheme)
        assert code == 401, (token, scheme, code, resp)
    code, _ = w.request("DELETE", "/v1/expectations/rel-sec", None, {"Authorization": "Bearer nope"})
    assert code == 401
    # 413 past 1 MiB, whether announced by Content-Length or not; nothing is written.
    big = b'{"experiment": "rel-sec", "description": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    code, resp = _put(w, big, TOKEN)
    assert code == 413, (code, resp)
    assert w.get("/v1/expectations/rel-sec")[0] == 404
    code, _ = _put(w, body, TOKEN)
    assert code == 201
    # The token is compared in constant time.
    from detector.web import auth

    assert "hmac.compare_digest" in inspect.getsource(auth.TokenStore.authenticate)


def test_scoped_tokens_user_ids_audit_and_kill_url_on_a_running_worker(workers, ns, tmp_path):
    """Issue 18 on the real worker: scopes from a tokens file, user ids only with read:users (and
    audited in the log without the ids), a loopback kill URL refused at registration."""
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        "tokens:\n"
        "  - {name: dashboards, token: sec-read-token-0001, scopes: [read]}\n"
        "  - {name: cleanup-job, token: sec-users-token-002, scopes: [read:users]}\n")
    w = workers(env=worker_env(tmp_path, DETECTOR_API_TOKENS_FILE=str(tokens)),
                name="sec-scopes")
    marker = f"uid{now_ms() % 10**8}"
    reg = {**REG, "experiment": "rel-sec-scopes", "population": {"allowlist": [f"{marker}-allowed"], "max_users": 5}}
    put_registration(w, reg)
    p = KafkaProducer2(ns)
    try:
        for i in range(3):
            p.event({"experiment": "rel-sec-scopes", "user_id": f"{marker}-out-{i}", "variant": "a", "ts": now_ms()})
        p.flush()
    finally:
        p.close()
    wait_until(lambda: (observed(w, "rel-sec-scopes") or {}).get("events") == 3, 30, 0.25, "events")

    def get(path, token):
        return w.request("GET", path, None, {"Authorization": f"Bearer {token}"} if token else {})

    # Without a token (DETECTOR_ANONYMOUS_READ=status by default): health and metrics, nothing else.
    assert get("/healthz", None)[0] == 200 and get("/metrics", None)[0] == 200
    for path in ("/v1/expectations", "/v1/expectations/rel-sec-scopes", "/v1/incidents",
                 "/v1/experiments/rel-sec-scopes", "/v1/experiments/rel-sec-scopes/blast-radius"):
        assert get(path, None)[0] == 401, path
    # `read`: the registration and the experiment, without the ids; no blast radius; no writes.
    for path in ("/v1/expectations", "/v1/expectations/rel-sec-scopes", "/v1/expectations/rel-sec-scopes/history",
                 "/v1/experiments/rel-sec-scopes", "/v1/incidents"):
        code, body = get(path, "sec-read-token-0001")
        assert code == 200 and marker not in json.dumps(body), (path, code)
    assert get("/v1/experiments/rel-sec-scopes/blast-radius", "sec-read-token-0001")[0] == 403
    code, _ = w.request("DELETE", "/v1/expectations/rel-sec-scopes", None,
                        {"Authorization": "Bearer sec-read-token-0001"})
    assert code == 403
    # `read:users`: the ids, each read audited.
    code, body = get("/v1/experiments/rel-sec-scopes/blast-radius", "sec-users-token-002")
    assert code == 200 and {u["user_id"] for u in body["users"]} >= {f"{marker}-out-{i}" for i in range(3)}
    code, body = get("/v1/expectations/rel-sec-scopes", "sec-users-token-002")
    assert body["population"]["allowlist"] == [f"{marker}-allowed"]
    # A kill URL to the broker's own port is refused at registration (no host is allowed here).
    code, resp = w.request("PUT", "/v1/expectations/rel-sec-kill", json.dumps(
        {**REG, "experiment": "rel-sec-kill", "mitigation": {"kill_url": "http://127.0.0.1:9092/"}}).encode(),
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert code == 422 and resp["errors"][0]["field"] == "mitigation.kill_url", resp
    w.stop()
    records = [json.loads(line) for line in Path(w.log_path).read_text(errors="replace").splitlines()
               if line.startswith("{") and '"audit"' in line]
    assert {(r["principal"], r["what"]) for r in records} >= {("cleanup-job", "blast radius"),
                                                                ("cleanup-job", "registration")}
    assert all(r["level"].lower() == "info" and marker not in json.dumps(r) for r in records)


def test_signed_webhooks_no_user_ids_in_metrics_or_logs_no_urls_from_events(workers, ns, tmp_path):
    from standardwebhooks.webhooks import Webhook

    rx, trap = Receiver(), Receiver()
    w = workers(env=worker_env(tmp_path, rx, DETECTOR_LOG_LEVEL="info"), name="sec")
    put_registration(w, REG)
    marker = f"uid{now_ms() % 10**8}"
    users = [f"{marker}-user-{i}" for i in range(6)]
    p = KafkaProducer2(ns)
    try:
        for i, uid in enumerate(users):
            p.event({"experiment": "rel-sec", "user_id": uid, "variant": "a", "ts": now_ms(),
                     # URLs in event data: the detector must never call them.
                     "url": trap.url, "webhook_url": trap.url, "kill_url": trap.url, "callback": trap.url,
                     "attributes": {"kill_url": trap.url, "webhook": trap.url, "country": "US"}})
            p.event({"experiment": f"rel-sec-ghost-{i % 2}", "user_id": uid, "ts": now_ms(),
                     "mitigation": {"kill_url": trap.url}, "labels": {"url": trap.url}})
        p.send(b'{"experiment":"rel-sec","user_id":"%s-bad","ts":"yesterday"}' % marker.encode(), b"rel-sec")
        p.flush()
    finally:
        p.close()
    rx.wait_for(lambda b: True, count=3, timeout=30)
    wait_until(lambda: (observed(w, "rel-sec") or {}).get("events") == 6, 20, 0.25, "events")
    time.sleep(2.5)  # metrics refresh (2 s timer) and any outbound request would have happened

    # Signed: every webhook verifies with the reference implementation, and a tampered one does not.
    wh = Webhook(SECRET)
    for req in rx.requests:
        headers = {k.lower(): v for k, v in req["headers"].items()}
        wh.verify(req["raw"], headers)
    tampered = dict((k.lower(), v) for k, v in rx.requests[0]["headers"].items())
    try:
        wh.verify(rx.requests[0]["raw"] + b" ", tampered)
        raise AssertionError("a tampered body verified")
    except Exception as exc:  # WebhookVerificationError
        assert "verif" in type(exc).__name__.lower() or "signature" in str(exc).lower()

    # URLs from event data are never called.
    assert trap.attempts == [], [a["path"] for a in trap.attempts]

    # No user id in metrics (labels or anything else) nor in the log at INFO.
    code, text = w.get("/metrics")
    assert code == 200 and "rel-sec" in text  # experiments are labels; users are not
    assert marker not in text
    w.stop()
    log = Path(w.log_path).read_text(errors="replace")
    assert "rel-sec" in log
    leaked = [line for line in log.splitlines() if marker in line]
    assert leaked == [], leaked[:5]


def test_dependency_audit_script_is_runnable():
    script = ROOT / "scripts" / "audit.sh"
    assert script.exists() and os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    subprocess.run([sys.executable, "-m", "py_compile", str(ROOT / "scripts" / "audit_pypi.py")], check=True)
