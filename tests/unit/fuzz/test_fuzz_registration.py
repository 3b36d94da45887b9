"""Fuzzing the registration validator (issue 8, item 7), on every path a registration takes.

`parse_registration` (all sources), the HTTP body decoder (JSON/YAML by content type) and the YAML
loader must return a result or raise their documented error only: `RegistrationError` with at
least one (field, message), or the API's `HTTPProblem` (400/413/415). Hostile YAML (alias bombs,
deep nesting, tags) is rejected quickly, never expanded or executed.
"""

from __future__ import annotations

import copy
import json
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from detector.registration.compiled import CompiledRegistration
from detector.registration import RegistrationError, load_yaml_documents, parse_registration, registration_to_dict
from detector.registration.model import POPULATION_FIELDS, TOP_LEVEL_FIELDS
from detector.web.registrations_api import HTTPProblem, decode_body

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = {
    "schema_version": 1, "experiment": "fuzz-exp", "owner": "fuzz", "description": "fuzzing",
    "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-02-01T00:00:00Z",
    "population": {"allowlist": ["u1", "u2"], "max_users": 10, "fraction": 0.01, "segments": {"country": ["US"]}},
    "variants": {"a": 0.5, "b": 0.5}, "severity": "critical", "labels": {"team": "x"},
    "mitigation": {"kill_url": "https://flags.example/kill"},
}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["", "\x00", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "9999-12-31T23:59:59Z",
                     "0000-00-00T00:00:00Z", "https://x.example/kill", "javascript:alert(1)", "file:///etc/passwd",
                     "http://169.254.169.254/", "critical", "NO", "yes", "a" * 2000, "0.5", "-1", "1e309"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=10) | st.sampled_from([*TOP_LEVEL_FIELDS, *POPULATION_FIELDS, "kill_url", "country", "a"]),
        inner, max_size=5),
    max_leaves=25,
)


def check_parse(raw, path_experiment=None) -> CompiledRegistration | None:
    try:
        e = parse_registration(raw, path_experiment=path_experiment)
    except RegistrationError as exc:
        assert exc.errors, "a RegistrationError must say what is wrong"
        assert all(isinstance(err.field, str) and err.field and isinstance(err.message, str) and err.message
                   for err in exc.errors)
        return None
    assert isinstance(e, CompiledRegistration)
    assert parse_registration(registration_to_dict(e)) == e  # canonical form round-trips
    if e.kill_url is not None:
        assert e.kill_url.startswith(("https://", "http://"))
    return e


@FUZZ
@given(values)
def test_any_document(raw):
    check_parse(raw)


@FUZZ
@given(st.sampled_from(sorted(VALID)), values, st.data())
def test_valid_document_with_one_field_replaced(key, value, data):
    raw = copy.deepcopy(VALID)
    if data.draw(st.booleans()) and key != "population":
        raw[key] = value
    else:
        raw["population"][data.draw(st.sampled_from(sorted(POPULATION_FIELDS)))] = value
    check_parse(raw, path_experiment=data.draw(st.sampled_from([None, "fuzz-exp", "other", "../etc", ""])))


def test_the_valid_document_is_valid():
    assert check_parse(copy.deepcopy(VALID)) is not None


CONTENT_TYPES = ["application/json", "application/yaml", "text/plain", "", "application/x-www-form-urlencoded",
                 "application/merge-patch+json", "text/html", "multipart/form-data"]


def check_body(body: bytes, ctype: str) -> None:
    try:
        raw = decode_body(body, ctype)
    except HTTPProblem as p:
        assert p.status in (400, 413, 415) and p.errors
        return
    check_parse(raw, path_experiment="fuzz-exp")


@FUZZ
@given(st.binary(max_size=200), st.sampled_from(CONTENT_TYPES))
@example(b"{" * 100_000, "application/json")
@example(b"[" * 100_000, "application/yaml")
@example(b'{"experiment": NaN}', "application/json")
@example(b'{"experiment": "a", "experiment": "b"}', "application/json")
@example(b"experiment: a\nexperiment: b\n", "application/yaml")
@example(b"!!python/object/apply:os.system ['true']", "application/yaml")
@example(b"\xef\xbb\xbf{}", "application/json")
def test_http_bodies(body, ctype):
    check_body(body, ctype)


@FUZZ
@given(values, st.sampled_from(["application/json", "application/yaml"]))
def test_http_bodies_from_documents(doc, ctype):
    check_body(json.dumps(doc).encode(), ctype)


def _bomb(depth: int = 9, width: int = 10) -> str:
    lines = ['a0: &a0 ["x"]']
    for i in range(1, depth):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines)


@pytest.mark.parametrize("text", [
    _bomb() + "\nexperiment: bomb\npopulation: {allowlist: *a8}\n",
    "experiment: bomb\nlabels: &l {a: 1}\npopulation:\n  segments: {country: [" + ", ".join(["US"] * 1000) + "]}\n",
    "experiment: bomb\n" + "population:\n  allowlist: " + "[" * 5000 + "]" * 5000 + "\n",
    "experiment: bomb\npopulation: {allowlist: !!python/name:os.system []}\n",
    "experiment: bomb\nstarts_at: 2026-01-01 00:00:00\npopulation: {max_users: 1}\n",
    "--- \n" * 1000,
])
def test_hostile_yaml_is_rejected_quickly(text):
    t0 = time.perf_counter()
    try:
        docs = load_yaml_documents(text)
    except RegistrationError as exc:
        assert exc.errors
    else:
        for doc in docs:
            check_parse(doc)
    assert time.perf_counter() - t0 < 5.0


@FUZZ
@given(st.text(max_size=300))
@example("a: &a [*a]")
@example("? [a, b]\n: c\n")
@example("experiment: x\n" * 2)
def test_any_yaml_text(text):
    try:
        docs = load_yaml_documents(text)
    except RegistrationError as exc:
        assert exc.errors
        return
    for doc in docs:
        check_parse(doc)
