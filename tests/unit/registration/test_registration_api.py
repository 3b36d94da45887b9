"""The aiohttp handlers on a real test server, with the in-memory service."""

from __future__ import annotations

import json

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from detector.registration.model import parse_registration, valid_experiment_key
from regtest_helpers import AUTH, BAD_CASES, TOKEN, VALID, make_app

URL = "/v1/expectations/subs-mvp-crm-qa"


async def put(client, body, *, url=URL, headers=AUTH, **params):
    return await client.put(url, json=body, headers=headers, params={k: "true" for k, v in params.items() if v})


@pytest.mark.parametrize("case_id,doc,field,_s", BAD_CASES, ids=[c[0] for c in BAD_CASES])
async def test_bad_registration_is_4xx_naming_the_field_and_nothing_is_written(client, service, case_id, doc, field, _s):
    if case_id == "experiment-missing":
        pytest.skip("valid over the API: the path names the experiment")
    exp = doc.get("experiment")
    # keep the path valid (and equal to a valid body key); the body is what is wrong
    url = f"/v1/expectations/{exp}" if valid_experiment_key(exp) else URL
    resp = await put(client, doc, url=url)
    body = await resp.json()
    assert 400 <= resp.status < 500, (case_id, resp.status, body)
    assert resp.status != 413
    assert field in [e["field"] for e in body["errors"]], (case_id, body)
    if resp.status == 422:
        assert field in body["error"], body["error"]
    assert service.writes == 0 and service.all() == {}


async def test_ten_megabyte_body_is_413(client, service):
    big = json.dumps(dict(VALID, description="x" * (10 * 1024 * 1024))).encode()
    resp = await client.put(URL, data=big, headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status == 413
    body = await resp.json()
    assert body["errors"][0]["field"] == "(body)"
    assert service.writes == 0


async def test_chunked_body_over_limit_is_413(client, service):
    async def gen():
        for _ in range(20):
            yield b"x" * (100 * 1024)

    resp = await client.put(URL, data=gen(), headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status == 413
    assert service.writes == 0


async def test_body_without_experiment_uses_the_path(client, service):
    body = {k: v for k, v in VALID.items() if k != "experiment"}
    assert (await put(client, body)).status == 201
    assert service.get("subs-mvp-crm-qa") is not None


async def test_experiment_differing_from_path(client, service):
    resp = await put(client, VALID, url="/v1/expectations/another-one")
    assert resp.status == 422
    body = await resp.json()
    assert body["errors"] == [{"field": "experiment", "message": body["errors"][0]["message"]}]
    assert "another-one" in body["errors"][0]["message"]
    assert service.writes == 0


async def test_invalid_key_in_path(client, service):
    resp = await put(client, VALID, url="/v1/expectations/bad%20key")
    assert resp.status == 400
    assert (await resp.json())["errors"][0]["field"] == "experiment"


@pytest.mark.parametrize(
    "data,ctype,status",
    [
        (b"{not json", "application/json", 400),
        (b'{"experiment": "a", "experiment": "b"}', "application/json", 400),
        (b'{"experiment": "subs-mvp-crm-qa", "population": {"fraction": NaN}}', "application/json", 400),
        (b"", "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b"experiment: [", "application/yaml", 400),
        (b"- a\n- b\n", "application/yaml", 422),
        (b"experiment=x", "application/x-www-form-urlencoded", 422),
        (b"<experiment/>", "application/xml", 415),
    ],
)
async def test_malformed_bodies(client, service, data, ctype, status):
    resp = await client.put(URL, data=data, headers={**AUTH, "Content-Type": ctype})
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"] and body["errors"][0]["field"]
    assert service.writes == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"},
     {"Authorization": "Bearer "}, {"Authorization": f"Bearer {TOKEN}x"}],
)
async def test_writes_without_valid_token_are_401(client, service, headers):
    resp = await put(client, VALID, headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await resp.json())["errors"][0]["field"] == "Authorization"
    resp = await client.delete(URL, headers=headers)
    assert resp.status == 401
    assert service.writes == 0


async def test_auth_is_checked_before_the_body(client, service):
    resp = await client.put(URL, data=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert resp.status == 401


async def test_no_token_configured_refuses_writes_with_503(service, monkeypatch):
    monkeypatch.delenv("DETECTOR_API_TOKEN", raising=False)
    async with TestClient(TestServer(make_app(service, token=None, anonymous_read="read"))) as c:
        resp = await put(c, VALID)
        assert resp.status == 503
        assert "DETECTOR_API_TOKEN" in (await resp.json())["error"]
        # DETECTOR_ANONYMOUS_READ=read: reads without a token, user ids left out.
        assert (await c.get("/v1/expectations")).status == 200
    assert service.writes == 0


async def test_token_from_the_settings(service, monkeypatch):
    from detector.settings import Settings
    from detector.web.auth import load_tokens
    from detector.web.registrations_api import add_routes
    from detector.web.middleware import secure_app

    monkeypatch.setenv("DETECTOR_API_TOKEN", "env-token")
    app = secure_app(tokens=load_tokens(Settings().api_token))
    add_routes(app.router, service)
    async with TestClient(TestServer(app)) as c:
        assert (await put(c, VALID, headers={"Authorization": "Bearer env-token"})).status == 201
        assert (await put(c, VALID, headers=AUTH)).status == 401


async def test_create_get_list_update_history(client, service):
    resp = await put(client, VALID, headers={**AUTH, "X-Detector-User": "alice"})
    assert resp.status == 201
    assert resp.headers["Location"] == URL
    body = await resp.json()
    assert body["action"] == "create" and body["active_rules"][0] == "allowlist_breach"
    assert service.get("subs-mvp-crm-qa") == parse_registration(VALID)

    got = await (await client.get(URL)).json()
    assert parse_registration(got) == parse_registration(VALID)
    listing = await (await client.get("/v1/expectations")).json()
    assert listing["count"] == 1 and listing["expectations"][0]["experiment"] == "subs-mvp-crm-qa"

    again = await put(client, VALID)
    assert again.status == 200 and (await again.json())["action"] == "unchanged"
    assert service.writes == 1

    changed = dict(VALID, severity="error")
    resp = await put(client, changed)
    assert resp.status == 200
    body = await resp.json()
    assert body["action"] == "update"
    assert body["diff"] == [{"field": "severity", "old": "critical", "new": "error"}]

    history = await (await client.get(URL + "/history")).json()
    assert [h["action"] for h in history["history"]] == ["create", "update"]
    assert history["history"][0]["who"] == "alice" and history["history"][1]["who"] == "api"
    assert history["history"][1]["diff"] == body["diff"]


async def test_curl_default_content_type_with_a_yaml_file(client, service):
    text = yaml.safe_dump(VALID)
    resp = await client.put(URL, data=text, headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 201, await resp.text()


async def test_yaml_body(client, service):
    text = yaml.safe_dump({k: v for k, v in VALID.items() if k != "experiment"})
    resp = await client.put(URL, data=text, headers={**AUTH, "Content-Type": "application/yaml"})
    assert resp.status == 201, await resp.text()
    assert service.get("subs-mvp-crm-qa").starts_at == 1612893600000


async def test_dry_run_returns_diff_and_rules_without_writing(client, service):
    await service.put(parse_registration(VALID), "seed")
    writes = service.writes
    new = dict(VALID, population=dict(VALID["population"], max_users=2), variants=None)
    resp = await put(client, new, dry_run=True)
    assert resp.status == 200
    body = await resp.json()
    assert body["dry_run"] is True and body["action"] == "update"
    assert {"field": "population.max_users", "old": 3, "new": 2} in body["diff"]
    assert any(c["field"] == "variants" and c["new"] is None for c in body["diff"])
    assert "sample_ratio_mismatch" not in body["active_rules"] and "max_users_exceeded" in body["active_rules"]
    assert service.writes == writes and service.get("subs-mvp-crm-qa").max_users == 3


async def test_invalid_dry_run_is_still_422(client, service):
    resp = await put(client, dict(VALID, severity="loud"), dry_run=True)
    assert resp.status == 422


async def test_risky_change_is_409_unless_confirmed(client, service):
    risky = dict(VALID, population=dict(VALID["population"], fraction=0.5, max_users=None))
    resp = await put(client, risky)
    assert resp.status == 409
    body = await resp.json()
    assert [r["code"] for r in body["risks"]] == ["allowlist_with_large_fraction"]
    assert body["errors"][0]["field"] == "population.fraction"
    assert "confirm=true" in body["error"]
    assert service.writes == 0

    dry = await (await put(client, risky, dry_run=True)).json()
    assert dry["requires_confirmation"] is True and service.writes == 0

    resp = await put(client, risky, confirm=True)
    assert resp.status == 201
    assert service.get("subs-mvp-crm-qa").fraction == 0.5


async def test_declaration_below_observed_traffic_is_409(client, service):
    service.observations["subs-mvp-crm-qa"] = {"enrolled_users": 500, "eligible_users": 1000, "observed_fraction": 0.5}
    resp = await put(client, VALID)
    assert resp.status == 409
    assert {r["code"] for r in (await resp.json())["risks"]} == {"max_users_below_observed", "fraction_below_observed"}
    assert (await put(client, VALID, confirm=True)).status == 201


async def test_bad_query_flag(client, service):
    resp = await client.put(URL, json=VALID, headers=AUTH, params={"confirm": "maybe"})
    assert resp.status == 400
    assert (await resp.json())["errors"][0]["field"] == "confirm"


async def test_delete(client, service):
    assert (await client.delete(URL, headers=AUTH)).status == 404
    await service.put(parse_registration(VALID), "seed")
    service.observations["subs-mvp-crm-qa"] = {"enrolled_users": 3, "eligible_users": 300}
    resp = await client.delete(URL, headers=AUTH)
    assert resp.status == 409
    assert (await resp.json())["risks"][0]["code"] == "delete_with_traffic"
    assert service.get("subs-mvp-crm-qa") is not None
    resp = await client.delete(URL, headers=AUTH, params={"dry_run": "true", "confirm": "true"})
    assert resp.status == 200 and service.get("subs-mvp-crm-qa") is not None
    resp = await client.delete(URL, headers=AUTH, params={"confirm": "true"})
    assert resp.status == 200
    assert service.get("subs-mvp-crm-qa") is None
    assert (await client.get(URL)).status == 404
    assert service.history("subs-mvp-crm-qa")[-1]["action"] == "delete"


async def test_experiment_view_side_by_side(client, service):
    assert (await client.get("/v1/experiments/subs-mvp-crm-qa")).status == 404
    await service.put(parse_registration(VALID), "seed")
    view = await (await client.get("/v1/experiments/subs-mvp-crm-qa")).json()
    assert view["registered"] and not view["observed"]
    assert all(r["state"] == "no_data" for r in view["rules"])
    service.observations["subs-mvp-crm-qa"] = {
        "enrolled_users": 4,
        "eligible_users": 200,
        "observed_fraction": 0.02,
        "variants": {"control": 3, "treatment": 1},
        "rules": {"max_users_exceeded": {"state": "firing", "statistic": 4, "since": "2021-02-10T00:00:00Z"}},
    }
    view = await (await client.get("/v1/experiments/subs-mvp-crm-qa")).json()
    cmp = view["comparison"]
    assert cmp["enrolled_users"] == {"observed": 4, "declared_max": 3, "allowlist_size": 3}
    assert cmp["eligible_users"] == {"observed": 200}
    assert cmp["fraction"]["observed"] == 0.02 and cmp["fraction"]["declared"] == 0.01
    assert cmp["variants"]["control"] == {"declared_weight": 0.5, "observed_users": 3, "observed_share": 0.75}
    rules = {r["rule"]: r for r in view["rules"]}
    assert rules["max_users_exceeded"]["state"] == "firing" and rules["max_users_exceeded"]["statistic"] == 4
    assert rules["max_users_exceeded"]["expected"] == {"max_users": 3}
    assert rules["max_users_exceeded"]["since"] == "2021-02-10T00:00:00Z"
    assert rules["allowlist_breach"]["state"] == "ok"


async def test_unregistered_experiment_view(client, service):
    service.observations["ghost"] = {"enrolled_users": 10, "eligible_users": 10,
                                     "rules": {"unregistered": {"state": "firing", "statistic": 10}}}
    view = await (await client.get("/v1/experiments/ghost")).json()
    assert view["registered"] is False and view["declaration"] is None
    assert view["rules"][0]["rule"] == "unregistered" and view["rules"][0]["state"] == "firing"


async def test_openapi_covers_the_http_contract(client):
    doc = await (await client.get("/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for path, methods in {
        "/healthz": ["get"], "/metrics": ["get"], "/v1/expectations": ["get"],
        "/v1/expectations/{experiment}": ["get", "put", "delete"],
        "/v1/expectations/{experiment}/history": ["get"], "/v1/experiments/{experiment}": ["get"],
        "/v1/experiments/{experiment}/blast-radius": ["get"], "/v1/incidents": ["get"],
        "/v1/incidents/{id}": ["get"], "/v1/openapi.json": ["get"],
    }.items():
        for m in methods:
            assert m in paths[path], (path, m)
    assert paths["/v1/expectations/{experiment}"]["put"]["security"] == [{"bearer": ["write"]}]
    refs = json.dumps(doc)
    for name in doc["components"]["schemas"]:
        assert f"#/components/schemas/{name}" in refs or name in ("Expectation",)
    import re

    for ref in set(re.findall(r'"#/components/schemas/([A-Za-z]+)"', refs)):
        assert ref in doc["components"]["schemas"], ref
    # every route we serve is documented
    served = {r.resource.canonical for r in client.app.router.routes() if r.method != "HEAD"}
    assert served <= set(paths)


async def test_services_container_with_registrations_attribute(service):

    from detector.web.registrations_api import add_routes

    class Services:
        registrations = service

    from detector.web.middleware import secure_app

    app = secure_app(api_token=TOKEN)
    add_routes(app.router, Services())
    async with TestClient(TestServer(app)) as c:
        assert (await put(c, VALID)).status == 201
    assert service.get("subs-mvp-crm-qa") is not None
