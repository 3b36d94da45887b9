"""The registration fields added for observe mode and flag configuration: `mode`, `flag`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.registration.compiled import Flag
from detector.registration import RegistrationError, parse_registration, registration_to_dict
from regtest_helpers import VALID, schema_errors

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "config" / "expectation.schema.json").read_text())


def test_defaults_page_and_no_flag_and_unchanged_canonical_form():
    e = parse_registration(VALID)
    assert e.mode == "page" and e.flag is None
    assert "mode" not in registration_to_dict(e) and "flag" not in registration_to_dict(e)


def test_observe_mode_and_flag_round_trip():
    e = parse_registration(dict(VALID, mode="observe", flag={"source": "growthbook"}))
    assert e.mode == "observe"
    assert e.flag == Flag(source="growthbook", key="subs-mvp-crm-qa")  # key defaults to the experiment
    doc = registration_to_dict(e)
    assert doc["mode"] == "observe" and doc["flag"] == {"source": "growthbook", "key": "subs-mvp-crm-qa"}
    assert parse_registration(doc) == e
    assert schema_errors(SCHEMA, doc) == []
    assert parse_registration(dict(VALID, flag={"key": "other-flag"})).flag == Flag(source=None, key="other-flag")


@pytest.mark.parametrize("doc,field", [
    (dict(VALID, mode="loud"), "mode"),
    (dict(VALID, mode=True), "mode"),
    (dict(VALID, flag={"key": ""}), "flag.key"),
    (dict(VALID, flag={"keys": "x"}), "flag.keys"),
    (dict(VALID, flag="x"), "flag"),
])
def test_bad_mode_or_flag_names_the_field_and_the_schema_agrees(doc, field):
    with pytest.raises(RegistrationError) as info:
        parse_registration(doc)
    assert field in [e.field for e in info.value.errors]
    assert schema_errors(SCHEMA, doc)
