"""A fleet that answers as one (issue 17), on the real broker.

Three workers in one group, the seed incident (`detector simulate incident`). Done when:
- the blast-radius CSV fetched from each worker is identical and exact (the 250 offenders);
- the incident list is the same through every worker;
- an incident acknowledged through one worker shows as acknowledged through the others;
- after SIGKILL of the owner, the two others give the same answers within the session timeout
  plus restore time, and meanwhile answer either the right answer or 503 with Retry-After,
  never a wrong or partial one;
- a real Prometheus scraping all three sees each experiment's series exactly once, and still
  exactly once (same values) after a fourth worker joins and partitions move.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from harness import ROOT, BOOTSTRAP, start_prometheus, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.prometheus]

TOKEN = "fleet-token"
QA = "crm-winback-email-qa"
SESSION_TIMEOUT_S = 6.0  # the broker's group.min.session.timeout.ms


def fetch(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    """Called with the token (every scope) unless `headers` are given."""
    headers = {"Authorization": f"Bearer {TOKEN}"} if headers is None else headers
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b"", {}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def console_session(url: str) -> str:
    """Sign in to the console of the worker at `url` with the token: the session cookie ("name=value")."""
    code, raw, headers = fetch(f"{url}/login", headers={})
    assert code == 200, code
    nonce = re.search(r'name="nonce" value="([^"]+)"', raw.decode()).group(1)
    form = urllib.parse.urlencode({"nonce": nonce, "next": "/", "token": TOKEN}).encode()
    req = urllib.request.Request(f"{url}/login", data=form, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"detector_login_csrf={nonce}"})
    try:
        urllib.request.build_opener(_NoRedirect).open(req, timeout=30)
        raise AssertionError("sign-in did not redirect")
    except urllib.error.HTTPError as e:
        assert e.code == 303, e.code
        return e.headers["Set-Cookie"].split(";")[0]


def csv_ids(raw: bytes) -> list[str]:
    rows = list(csv.reader(io.StringIO(raw.decode())))
    assert rows and rows[0][0] == "user_id", rows[:1]
    return [r[0] for r in rows[1:]]


def prom_query(prom: str, expr: str) -> list[dict]:
    status, raw, _ = fetch(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    body = json.loads(raw)
    assert status == 200 and body["status"] == "success", body
    return body["data"]["result"]


def test_three_workers_answer_as_one(workers, receiver, ns, tmp_path):
    ns.partitions = 6
    env = {"DETECTOR_WEBHOOK_URLS": receiver.url, "DETECTOR_API_TOKEN": TOKEN,
           "DETECTOR_SESSION_TIMEOUT": str(SESSION_TIMEOUT_S), "DETECTOR_FLEET_SECRET": "fleet-secret-of-the-test"}
    fleet = [workers(env=env, name=f"w{i}", wait_ready=False) for i in range(3)]

    def all_assigned():
        parts = []
        for w in fleet:
            code, body = w.get("/readyz")
            if code != 200:
                return False
            parts += body["partitions"]
        return sorted(parts) == list(range(ns.partitions))

    wait_until(all_assigned, 90, 0.5, "three ready workers sharing the six partitions")

    run = subprocess.run([sys.executable, "-m", "detector", "simulate", "incident", "--bootstrap", BOOTSTRAP,
                          "--prefix", ns.prefix, "--url", fleet[1].url, "--others", "250", "--json"],
                         cwd=ROOT, env={**os.environ, **ns.env()}, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    truth = json.loads(run.stdout)
    offenders = sorted(truth["offenders"])
    assert len(offenders) == 250
    receiver.wait_for(lambda b: b.get("experiment") == QA and b.get("rule") == "allowlist_breach", timeout=30)

    # ---- the blast-radius CSV: identical and exact through every worker ----------------------
    def csvs():
        out = []
        for w in fleet:
            code, raw, headers = fetch(f"{w.url}/v1/experiments/{QA}/blast-radius?format=csv")
            if code != 200:
                return None
            out.append((raw, headers.get("X-Detector-Served-By")))
        return out

    got = wait_until(lambda: (c := csvs()) and all(sorted(csv_ids(raw)) == offenders for raw, _ in c) and c,
                     60, 0.5, "the exact blast radius through every worker")
    assert len({raw for raw, _ in got}) == 1, "the CSV differs between workers"
    owners = {served for _, served in got}
    assert len(owners) == 1, owners
    owner_url = owners.pop()
    others = [w for w in fleet if w.url != owner_url]
    reference_csv = got[0][0]

    def median_ms(w, n=21):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            assert fetch(f"{w.url}/v1/experiments/{QA}/blast-radius?limit=100")[0] == 200
            times.append((time.perf_counter() - t) * 1000)
        return sorted(times)[n // 2]

    direct, forwarded = median_ms(next(w for w in fleet if w.url == owner_url)), median_ms(others[0])
    print(f"blast radius (100 users) median: {direct:.1f} ms from the owner, {forwarded:.1f} ms forwarded")
    assert owner_url in {w.url for w in fleet}

    # ---- incidents: the same list through every worker; ack through one shows on all ---------
    def listing(w):
        code, raw, _ = fetch(f"{w.url}/v1/incidents?experiment={QA}")
        assert code == 200, raw
        return json.loads(raw)["incidents"]

    # an outside caller cannot claim to be a worker: the forwarding header needs the fleet's signature
    code, raw, _ = fetch(f"{others[0].url}/v1/experiments/{QA}/blast-radius?format=csv",
                         headers={"Authorization": f"Bearer {TOKEN}", "X-Detector-Forwarded-Partitions": "0,1,2,3,4,5"})
    assert code == 401, (code, raw[:200])

    lists = [listing(w) for w in fleet]
    assert lists[0] and all(ls == lists[0] for ls in lists), lists
    # registrations and the experiment's status: the same document through every worker
    for path in ("/v1/expectations", f"/v1/expectations/{QA}", f"/v1/experiments/{QA}",
                 "/v1/discovery?all=true", "/v1/discovery?all=true&format=csv"):
        answers = [fetch(w.url + path)[:2] for w in fleet]
        assert answers[0][0] == 200 and all(a == answers[0] for a in answers), (path, answers)
    registered = json.loads(fetch(fleet[2].url + "/v1/expectations")[1])["expectations"]
    assert {e["experiment"] for e in registered} == {QA, *truth["healthy"]}
    observed = json.loads(fetch(fleet[0].url + "/v1/discovery?all=true")[1])
    assert {e["experiment"] for e in observed["experiments"]} == {QA, *truth["healthy"]}, observed
    rows = list(csv.reader(io.StringIO(fetch(fleet[1].url + "/v1/discovery?all=true&format=csv")[1].decode())))
    assert sorted(r[0] for r in rows[1:]) == sorted({QA, *truth["healthy"]}), rows
    iid = next(i["id"] for i in lists[0] if i["rule"] == "allowlist_breach")
    code, raw, _ = fetch(f"{others[0].url}/v1/incidents/{iid}/ack", "POST", b'{"who": "alice"}',
                         {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert code == 200, raw
    for w in fleet:
        code, raw, _ = fetch(f"{w.url}/v1/incidents/{iid}")
        assert code == 200 and json.loads(raw)["acknowledged_by"] == "alice", (w.url, raw)
    # without the token the forwarded write is refused by the owner, as it would be locally
    code, _, _ = fetch(f"{others[1].url}/v1/incidents/{iid}/resolve", "POST", b'{"who": "mallory"}',
                       {"Content-Type": "application/json"})
    assert code in (401, 403), code

    # ---- Prometheus over all three: each experiment's series exactly once --------------------
    prom = start_prometheus([f"127.0.0.1:{w.port}" for w in fleet], tmp_path)
    try:
        experiments = {QA, *truth["healthy"]}

        def once_each():
            res = prom_query(prom.url, "count by (experiment) (exposure_detector_experiment_events_total)")
            seen = {r["metric"]["experiment"]: float(r["value"][1]) for r in res}
            return set(seen) == experiments and all(v == 1 for v in seen.values()) and seen

        wait_until(once_each, 30, 0.5, "one series per experiment across the fleet")
        total = prom_query(prom.url, f'sum(exposure_detector_experiment_events_total{{experiment="{QA}"}})')
        events_before = float(total[0]["value"][1])
        assert events_before > 0

        # A fourth worker joins: partitions move; the old owners drop the series of the experiments
        # they lost, the new owners export them after restoring: still exactly one series each.
        late = workers(env=env, name="w3", wait_ready=False)
        fleet.append(late)
        prom.stop()
        (tmp_path / "p2").mkdir()
        prom = start_prometheus([f"127.0.0.1:{w.port}" for w in fleet], tmp_path / "p2")
        wait_until(all_assigned, 60, 0.5, "four workers sharing the six partitions")
        seen = wait_until(once_each, 30, 0.5, "one series per experiment after the rebalance")
        total = prom_query(prom.url, f'sum(exposure_detector_experiment_events_total{{experiment="{QA}"}})')
        assert float(total[0]["value"][1]) == events_before, (total, events_before, seen)
    finally:
        prom.stop()
    # the blast radius after the rebalance: the same CSV from every worker, whoever owns it now
    got = wait_until(lambda: (c := csvs()) and len({raw for raw, _ in c}) == 1 and c, 30, 0.5,
                     "the same blast radius after the rebalance")
    assert got[0][0] == reference_csv
    owner_url = got[0][1]
    owner = next(w for w in fleet if w.url == owner_url)
    others = [w for w in fleet if w is not owner]

    # ---- SIGKILL of the owner: the others answer the same, never a wrong answer meanwhile -----
    owner.kill()
    t0 = time.monotonic()
    wrong = []

    def survivors_agree():
        ok = True
        for w in others:
            code, raw, headers = fetch(f"{w.url}/v1/experiments/{QA}/blast-radius?format=csv")
            if code == 200:
                if raw != reference_csv:
                    wrong.append((w.url, raw[:200]))
            elif code == 503:
                assert headers.get("Retry-After"), headers
                ok = False
            else:
                wrong.append((w.url, code, raw[:200]))
                ok = False
        return ok

    wait_until(survivors_agree, SESSION_TIMEOUT_S + 30, 0.25, "the survivors to answer again")
    took = time.monotonic() - t0
    assert not wrong, wrong
    for w in others:
        code, raw, _ = fetch(f"{w.url}/v1/incidents/{iid}")
        assert code == 200 and json.loads(raw)["acknowledged_by"] == "alice", raw
    print(f"survivors answered the same {took:.1f} s after SIGKILL of the owner "
          f"(session timeout {SESSION_TIMEOUT_S} s)")

    # ---- the console through a worker that does not own the incident: the session's principal is
    # forwarded (signed), not its cookie; the page's form works through the same worker -------------
    cookie = console_session(others[0].url)
    code, raw, headers = fetch(f"{others[0].url}/incidents/{iid}", headers={"Cookie": cookie})
    assert code == 200, raw[:300]
    via = next(w for w in others if w.url != headers.get("X-Detector-Served-By"))
    code, raw, headers = fetch(f"{via.url}/incidents/{iid}", headers={"Cookie": cookie})
    assert code == 200 and headers.get("X-Detector-Served-By") != via.url, (code, headers)
    csrf = re.search(r'name="csrf" value="([^"]+)"', raw.decode()).group(1)
    form = urllib.parse.urlencode({"csrf": csrf}).encode()
    req = urllib.request.Request(f"{via.url}/incidents/{iid}/resolve", data=form, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    try:
        urllib.request.build_opener(_NoRedirect).open(req, timeout=30)
        raise AssertionError("the console's resolve did not redirect")
    except urllib.error.HTTPError as e:
        # the owner's handler ran (its CSRF check passed) and says what it did
        done = e.headers["Location"]
        assert e.code == 303 and done in (f"/incidents/{iid}?done=resolved", f"/incidents/{iid}?done=unchanged"), done
    if done.endswith("=resolved"):  # by the session's principal
        wait_until(lambda: "api-token" in str(json.loads(fetch(f"{others[0].url}/v1/incidents/{iid}")[1])
                                              .get("resolved_by")), 15, 0.25, "resolved by the session's principal")
    # a forged form (wrong CSRF token) through the same worker is refused by the owner
    req = urllib.request.Request(f"{via.url}/incidents/{iid}/ack", data=b"csrf=forged", method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    try:
        urllib.request.build_opener(_NoRedirect).open(req, timeout=30)
        raise AssertionError("a forged console form was accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 403, e.code
