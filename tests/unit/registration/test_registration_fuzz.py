"""Property tests: parse_registration never raises anything but RegistrationError, and round-trips."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.registration import RegistrationError, load_yaml_documents, parse_registration, registration_to_dict
from detector.registration.model import POPULATION_FIELDS, TOP_LEVEL_FIELDS
from regtest_helpers import VALID

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["", " ", "2021-02-09T18:00:00Z", "2021-13-40T99:99:99+99:99", "US", "https://x", "ftp://x",
                     "critical", "0.5", "-1", "a" * 200]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10) | st.sampled_from(
        list(TOP_LEVEL_FIELDS) + list(POPULATION_FIELDS) + ["control", "kill_url", "country"]), inner, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(list(TOP_LEVEL_FIELDS) + ["junk"])
pop_keys = st.sampled_from(list(POPULATION_FIELDS) + ["junk"])


def check(raw, path_experiment=None):
    try:
        e = parse_registration(raw, path_experiment=path_experiment)
    except RegistrationError as exc:
        assert exc.errors and all(err.field and err.message for err in exc.errors)
        return
    assert parse_registration(registration_to_dict(e)) == e
    assert e.active_rules()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_values(raw):
    check(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, json_values, max_size=8), st.dictionaries(pop_keys, json_values, max_size=5),
       st.sampled_from([None, "subs-mvp-crm-qa", "bad key"]))
def test_structured_documents(doc, population, path_experiment):
    doc = dict(doc)
    if population:
        doc["population"] = population
    check(doc, path_experiment)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["owner", "starts_at", "ends_at", "severity", "tolerance", "alpha", "variants", "labels",
                        "mitigation", "population.allowlist", "population.max_users", "population.fraction",
                        "population.segments", "schema_version", "experiment"]), json_values)
def test_one_field_mutated_from_valid(field, value):
    doc = copy.deepcopy(VALID)
    node = doc
    *parents, last = field.split(".")
    for p in parents:
        node = node[p]
    node[last] = value
    check(doc)


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_yaml_text_never_crashes(text):
    try:
        docs = load_yaml_documents(text)
    except RegistrationError:
        return
    for raw in docs:
        check(raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, json_values, max_size=8), st.dictionaries(pop_keys, json_values, max_size=5))
def test_handlers_never_fail_with_5xx(doc, population):
    """Random bodies through the real handlers: a 2xx/409 or a 4xx with named fields, never a 500."""
    import asyncio
    import json

    from aiohttp.test_utils import TestClient, TestServer

    from detector.registration.service import InMemoryRegistrationService
    from regtest_helpers import AUTH, make_app

    if population:
        doc = dict(doc, population=population)
    try:
        data = json.dumps(doc)
    except (ValueError, TypeError):
        return

    async def one():
        service = InMemoryRegistrationService()
        async with TestClient(TestServer(make_app(service))) as c:
            resp = await c.put("/v1/expectations/subs-mvp-crm-qa", data=data,
                               headers={**AUTH, "Content-Type": "application/json"})
            body = await resp.json()
            assert resp.status in (200, 201, 400, 409, 422), (resp.status, body)
            if resp.status >= 400:
                assert body["errors"] and all(e["field"] for e in body["errors"])
                assert service.writes == 0

    asyncio.run(one())
