"""`identity.context_kind`: the context kind whose key is an experiment's unit (LaunchDarkly)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.registration.errors import RegistrationError
from detector.registration.model import parse_registration, registration_to_dict

BASE = {"experiment": "org-pricing", "population": {"max_users": 10}}
SCHEMA = Path(__file__).resolve().parents[3] / "config" / "expectation.schema.json"


def test_context_kind_is_compiled_and_round_trips():
    reg = parse_registration({**BASE, "identity": {"context_kind": "organization"}})
    assert reg.context_kind == "organization"
    doc = registration_to_dict(reg)
    assert doc["identity"] == {"context_kind": "organization"}
    assert parse_registration(doc) == reg


def test_without_identity_there_is_no_kind_and_no_key_in_the_canonical_form():
    reg = parse_registration(BASE)
    assert reg.context_kind is None
    assert "identity" not in registration_to_dict(reg)
    assert parse_registration({**BASE, "identity": {}}).context_kind is None


@pytest.mark.parametrize("kind, words", [
    ("multi", "reserved"),
    ("kind", "reserved"),
    ("org unit", "ASCII letters"),
    ("", "ASCII letters"),
    ("k" * 65, "1-64"),
    ("organisation/eu", "ASCII letters"),
    (7, "must be a string"),
])
def test_a_bad_context_kind_is_a_clear_error_with_its_path(kind, words):
    with pytest.raises(RegistrationError) as err:
        parse_registration({**BASE, "identity": {"context_kind": kind}})
    [problem] = err.value.errors
    assert problem.field == "identity.context_kind"
    assert words in problem.message


def test_an_unknown_identity_field_suggests_the_known_one():
    with pytest.raises(RegistrationError) as err:
        parse_registration({**BASE, "identity": {"contextKind": "organization"}})
    [problem] = err.value.errors
    assert problem.field == "identity.contextKind" and "context_kind" in problem.message


def test_the_published_schema_has_the_field():
    schema = json.loads(SCHEMA.read_text())
    assert "identity" in schema["properties"]
    identity = json.dumps(schema)
    assert "context_kind" in identity and "^[A-Za-z0-9._-]{1,64}$" in identity
