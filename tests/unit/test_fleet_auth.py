"""Worker-to-worker hops: signed with the fleet secret, carrying no caller credentials.

The pure signing/verification, then two real aiohttp workers (in-process servers) whose Fleet
forwards to each other: the owner sees the caller's principal, never its token or cookie; an
outside caller cannot use the forwarding header; no secret means no forwarding (503 naming it).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from detector.web import auth, fleet_auth
from detector.web.auth import Principal, add_route
from detector.web.fleet import Fleet, Membership, partition_of
from detector.web.fleet_auth import FORWARDED, FleetAuthError, Hop, sign, verify
from detector.web.middleware import secure_app
from detector.web.problems import paged, read_body

SECRET = "fleet-secret-for-tests-0123456789"
NOW = 1_800_000_000.0
ALICE = Hop(Principal("alice", frozenset({"read", "read:users"})))


def signed(**over):
    args = dict(method="GET", path_qs="/v1/experiments/x?format=csv", partitions="1,3", hop=ALICE, body=None, now=NOW)
    args.update(over)
    return sign(SECRET, **args)


def test_a_signed_hop_verifies_and_names_its_principal():
    hop = verify(SECRET, method="GET", path_qs="/v1/experiments/x?format=csv", headers=signed(), now=NOW + 5, body=b"")
    assert hop.principal == ALICE.principal and not hop.session


@pytest.mark.parametrize("change, error", [
    (dict(path_qs="/v1/experiments/y?format=csv"), "does not match"),  # tampered path
    (dict(path_qs="/v1/experiments/x"), "does not match"),  # tampered query
    (dict(method="POST"), "does not match"),
    (dict(now=NOW + 31), "stale"),
    (dict(now=NOW - 31), "stale"),
    (dict(secret="another-secret"), "does not match"),
    (dict(body=b'{"who": "mallory"}'), "body does not match"),
])
def test_a_tampered_stale_or_foreign_hop_is_refused(change, error):
    headers = signed(body=b'{"who": "alice"}')
    args = dict(secret=SECRET, method="GET", path_qs="/v1/experiments/x?format=csv", now=NOW, body=b'{"who": "alice"}')
    args.update(change)
    with pytest.raises(FleetAuthError, match=error):
        verify(args.pop("secret"), headers=headers, **args)


def test_tampered_partitions_or_claims_are_refused():
    headers = signed()
    with pytest.raises(FleetAuthError, match="does not match"):
        verify(SECRET, method="GET", path_qs="/v1/experiments/x?format=csv", headers={**headers, FORWARDED: "1"}, now=NOW)
    forged = signed(hop=Hop(Principal("root", frozenset(auth.SCOPES))))
    with pytest.raises(FleetAuthError, match="does not match"):
        verify(SECRET, method="GET", path_qs="/v1/experiments/x?format=csv",
               headers={**headers, fleet_auth.CLAIMS: forged[fleet_auth.CLAIMS]}, now=NOW)
    with pytest.raises(FleetAuthError, match="no fleet secret"):
        verify("", method="GET", path_qs="/v1/experiments/x?format=csv", headers=headers, now=NOW)


def test_advertised_urls_are_signed():
    data = fleet_auth.sign_url(SECRET, "http://10.0.0.7:6066")
    assert fleet_auth.verified_url(SECRET, data) == "http://10.0.0.7:6066"
    assert fleet_auth.verified_url("other", data) == ""
    assert fleet_auth.verified_url(SECRET, "http://rogue:6066") == ""


# ---- two real workers -------------------------------------------------------------------------
class Worker:
    def __init__(self, secret: str, partitions: set[int]):
        self.settings = SimpleNamespace(advertised_url="http://placeholder", web_host="127.0.0.1", web_port=0,
                                        fleet_secret=secret, partitions=2, app_id="t", topics=None)
        self.ingest = SimpleNamespace(partitions=partitions, rebalancing=False)
        self.members: dict[int, str] = {}
        self.fleet = Fleet(self.settings, self.ingest, experiment_of_incident=lambda iid: None,
                           describe_group=self._describe)
        self.seen: list[dict] = []
        app = secure_app(api_token="caller-token-0123456789", anonymous_read="none")
        self.fleet.install(app)

        async def experiment(request: web.Request) -> web.Response:
            self.seen.append({"authorization": request.headers.get("Authorization"),
                              "cookie": request.headers.get("Cookie"), "principal": auth.principal(request).name})
            return web.json_response({"experiment": request.match_info["experiment"],
                                      "principal": auth.principal(request).name})

        async def incident(request: web.Request) -> web.Response:
            return web.json_response({"error": "no such incident"}, status=404)

        async def post(request: web.Request) -> web.Response:
            return web.json_response({"body": (await read_body(request)).decode()})

        async def expectations(request: web.Request) -> web.Response:  # as the real list: every worker has all
            keys, cursor = paged(request, sorted(EXPERIMENTS), lambda k: [k], shape=(str,))
            return web.json_response({"count": len(keys), "total": len(EXPERIMENTS), "next_cursor": cursor,
                                      "expectations": [{"experiment": k} for k in keys]})

        add_route(app.router, "GET", "/v1/expectations", expectations, access="read")
        add_route(app.router, "GET", "/v1/experiments/{experiment}", experiment, access="read")
        add_route(app.router, "POST", "/v1/experiments/{experiment}", post, access="write")
        add_route(app.router, "GET", "/v1/incidents/{id}", incident, access="read")
        self.client = TestClient(TestServer(app))

    async def _describe(self) -> Membership:
        return Membership(stable=True, owners=dict(self.members), at=0)

    async def start(self) -> str:
        await self.client.start_server()
        self.fleet.url = str(self.client.make_url("")).rstrip("/")
        return self.fleet.url


def experiment_in(partition: int) -> str:
    return next(f"exp-{i}" for i in range(100) if partition_of(f"exp-{i}", 2) == partition)


EXPERIMENTS = [f"exp-{i:02d}" for i in range(11)]
CALLER = {"Authorization": "Bearer caller-token-0123456789", "Cookie": "detector_session=abc"}


@asynccontextmanager
async def two_workers(secret_a: str = SECRET, secret_b: str = SECRET):
    a, b = Worker(secret_a, {0}), Worker(secret_b, {1})
    try:
        members = {0: await a.start(), 1: await b.start()}
        a.members = b.members = members
        yield a, b
    finally:
        await a.client.close()
        await b.client.close()


async def test_forwarded_request_carries_the_principal_not_the_credentials():
    async with two_workers() as (a, b):
        r = await a.client.get(f"/v1/experiments/{experiment_in(1)}", headers=CALLER)
        assert r.status == 200, await r.text()
        assert (await r.json())["principal"] == "api-token"
        assert r.headers["X-Detector-Served-By"] == b.fleet.url
        assert b.seen == [{"authorization": None, "cookie": None, "principal": "api-token"}]
        r = await a.client.post(f"/v1/experiments/{experiment_in(1)}", data=b'{"who": "alice"}', headers=CALLER)
        assert r.status == 200 and (await r.json())["body"] == '{"who": "alice"}'
        assert r.headers["X-Detector-Served-By"] == b.fleet.url
        # without the caller's token the owner refuses, as it would locally
        r = await a.client.get(f"/v1/experiments/{experiment_in(1)}")
        assert r.status == 401


async def test_an_outside_caller_cannot_use_the_forwarding_header():
    async with two_workers() as (a, b):
        for headers in ({**CALLER, FORWARDED: "1"}, {FORWARDED: "1"},
                        {**CALLER, **signed(path_qs=f"/v1/experiments/{experiment_in(1)}", partitions="1",
                                            now=NOW)}):  # a stale (replayed) signature
            r = await b.client.get(f"/v1/experiments/{experiment_in(1)}", headers=headers)
            assert r.status == 401, (headers, await r.text())
        assert b.seen == []


async def test_a_member_with_another_secret_is_refused_and_without_a_secret_nothing_is_forwarded():
    async with two_workers(SECRET, "another-secret") as (a, b):
        r = await a.client.get(f"/v1/experiments/{experiment_in(1)}", headers=CALLER)
        assert r.status == 401 and b.seen == []
    async with two_workers("", "") as (a, b):
        r = await a.client.get(f"/v1/experiments/{experiment_in(1)}", headers=CALLER)
        assert r.status == 503 and "DETECTOR_FLEET_SECRET" in await r.text()
        r = await a.client.get(f"/v1/experiments/{experiment_in(0)}", headers=CALLER)
        assert r.status == 200  # its own experiments need no secret
        assert b.seen == []


async def test_an_incident_id_stays_one_path_segment_when_other_owners_are_asked():
    async with two_workers() as (a, b):
        r = await a.client.get(f"/v1/incidents/..%2Fexperiments%2F{experiment_in(1)}", headers=CALLER)
        assert r.status == 404, await r.text()
        assert b.seen == []  # the owner was asked for the incident, not for /v1/experiments/...


@pytest.mark.parametrize("limit", [1, 3, 4, 11, 20])
async def test_a_gathered_list_pages_across_owners(limit):
    async with two_workers() as (a, b):
        seen, cursor, pages = [], None, 0
        while True:
            q = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
            r = await a.client.get("/v1/expectations" + q, headers=CALLER)
            assert r.status == 200, await r.text()
            body = await r.json()
            assert body["count"] == len(body["expectations"]) <= limit
            seen += [e["experiment"] for e in body["expectations"]]
            cursor, pages = body["next_cursor"], pages + 1
            if not cursor:
                break
            assert body["next"].startswith("/v1/expectations?") and pages < 20
        assert seen == sorted(EXPERIMENTS)
        assert pages == -(-len(EXPERIMENTS) // limit)  # ceil: no empty last page


async def test_a_lone_worker_without_a_secret_answers_the_lists_itself():
    w = Worker("", {0, 1})
    w.members = {0: await w.start(), 1: w.fleet.url}
    try:
        r = await w.client.get("/v1/expectations?limit=5", headers=CALLER)
        assert r.status == 200, await r.text()
        body = await r.json()
        assert [e["experiment"] for e in body["expectations"]] == sorted(EXPERIMENTS)[:5] and body["next_cursor"]
    finally:
        await w.client.close()


def test_fleet_peers_restrict_the_advertised_urls():
    peers = fleet_auth.parse_peers("10.0.0.0/8, detector-1:6066,[fd00::1]:6066")
    assert fleet_auth.peer_allowed("http://10.1.2.3:6066", peers)
    assert fleet_auth.peer_allowed("http://detector-1:6066", peers)
    assert fleet_auth.peer_allowed("http://[fd00::1]:6066", peers)
    assert not fleet_auth.peer_allowed("http://192.168.1.5:6066", peers)
    assert not fleet_auth.peer_allowed("http://detector-1:8080", peers)
    assert not fleet_auth.peer_allowed("http://rogue.example:6066", peers)
    assert fleet_auth.peer_allowed("http://anything:1", fleet_auth.parse_peers(""))
    with pytest.raises(ValueError, match="DETECTOR_FLEET_PEERS"):
        fleet_auth.parse_peers("not a peer")
