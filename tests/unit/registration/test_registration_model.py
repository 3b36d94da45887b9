"""parse_registration / registration_to_dict / YAML loading / JSON Schema agreement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.registration.compiled import CompiledRegistration
from detector.registration import (
    RegistrationError,
    load_dir,
    load_file,
    load_yaml_documents,
    parse_registration,
    registration_to_dict,
)
from detector.timestamps import format_timestamp
from detector.timestamps import parse_rfc3339 as parse_timestamp
from detector.registration.schema import registration_json_schema
from regtest_helpers import BAD_CASES, VALID, schema_errors

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "config" / "expectations"
SCHEMA_FILE = ROOT / "config" / "expectation.schema.json"


def test_valid_registration_parses_to_the_model():
    e = parse_registration(VALID)
    assert e.experiment == "subs-mvp-crm-qa"
    assert e.allowlist == frozenset({"qa-001", "qa-002", "qa-003"})
    assert e.max_users == 3 and e.fraction == 0.01
    assert e.segments == {"country": frozenset({"US"})}
    assert e.variants == {"control": 0.5, "treatment": 0.5}
    assert e.starts_at == 1612893600000
    assert e.severity == "critical" and e.tolerance == 0.06 and e.alpha is None and e.schema_version == 1
    assert e.unenrolled_logged == 1.0
    population_rules = [
        "allowlist_breach", "max_users_exceeded", "fraction_exceeded", "returning_enrolled_exceeded", "segment_breach",
        "outside_window",
        "sample_ratio_mismatch",
    ]
    # in registry order; the variant-level rules (engine/rules/) follow when variants are declared
    assert [r for r in e.active_rules() if r in population_rules] == population_rules


def test_canonical_form_round_trips_and_is_stable():
    e = parse_registration(VALID)
    d = registration_to_dict(e)
    assert parse_registration(d) == e
    assert list(d) == ["schema_version", "experiment", "owner", "description", "starts_at", "ends_at",
                       "population", "variants", "severity", "tolerance"]  # alpha only when set
    shuffled = dict(reversed(list(VALID.items())))
    shuffled["population"] = dict(VALID["population"], allowlist=["qa-003", "qa-001", "qa-002"])
    assert json.dumps(registration_to_dict(parse_registration(shuffled))) == json.dumps(d)


@pytest.mark.parametrize("case_id,doc,field,_schema", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_registration_names_the_field(case_id, doc, field, _schema):
    with pytest.raises(RegistrationError) as info:
        parse_registration(doc)
    fields = [e.field for e in info.value.errors]
    assert field in fields, (case_id, [str(e) for e in info.value.errors])
    for err in info.value.errors:
        assert err.message and len(err.message) > 5


@pytest.mark.parametrize("case_id,doc,field,schema_can", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_json_schema_rejects_what_it_can_express(case_id, doc, field, schema_can):
    if case_id == "experiment-missing" or not schema_can:
        pytest.skip("not expressible in JSON Schema; the parser checks it")
    assert schema_errors(registration_json_schema(), doc), case_id


def test_experiment_must_match_path():
    with pytest.raises(RegistrationError) as info:
        parse_registration(VALID, path_experiment="other-experiment")
    assert info.value.errors[0].field == "experiment"
    assert "differs" in info.value.errors[0].message
    body = {k: v for k, v in VALID.items() if k != "experiment"}
    assert parse_registration(body, path_experiment="from-path").experiment == "from-path"


def test_all_problems_reported_at_once():
    doc = dict(VALID, severity="loud", alpha=1, population={"fraction": 2, "max_users": -1})
    with pytest.raises(RegistrationError) as info:
        parse_registration(doc)
    assert {"severity", "alpha", "population.fraction", "population.max_users"} <= {e.field for e in info.value.errors}


def test_hints():
    with pytest.raises(RegistrationError) as info:
        parse_registration(dict(VALID, max_users=3))
    assert "population.max_users" in info.value.errors[0].message
    with pytest.raises(RegistrationError) as info:
        parse_registration(dict(VALID, sevrity="info"))
    assert "'severity'" in info.value.errors[0].message
    with pytest.raises(RegistrationError) as info:
        parse_registration(dict(VALID, population={"fraction": 10}))
    assert "0.1" in info.value.errors[0].message


def test_not_a_mapping():
    for raw in (None, [], "x", 3, [VALID]):
        with pytest.raises(RegistrationError):
            parse_registration(raw)


@pytest.mark.parametrize(
    "text,ms",
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.123456Z", 123),
        ("1970-01-01T01:00:00+01:00", 0),
        ("1969-12-31T23:59:59.5z", -500),
        ("2021-02-09T18:00:00Z", 1612893600000),
    ],
)
def test_timestamps(text, ms):
    assert parse_timestamp(text) == ms
    assert parse_timestamp(format_timestamp(ms)) == ms


def test_yaml_booleans_get_a_hint_and_timestamps_stay_strings():
    docs = load_yaml_documents(
        "experiment: nordic\npopulation: {segments: {country: [NO, SE]}}\nstarts_at: 2021-02-09T18:00:00Z\n"
    )
    assert docs[0]["starts_at"] == "2021-02-09T18:00:00Z"
    with pytest.raises(RegistrationError) as info:
        parse_registration(docs[0])
    err = info.value.errors[0]
    assert err.field == "population.segments.country[0]" and "quote" in err.message


def test_yaml_duplicate_keys_are_rejected():
    with pytest.raises(RegistrationError) as info:
        load_yaml_documents("experiment: a\npopulation: {max_users: 3, max_users: 300}\n", "f.yaml")
    assert "duplicate key 'max_users'" in str(info.value)


def test_load_file_multi_document_and_list(tmp_path):
    (tmp_path / "multi.yaml").write_text(
        "experiment: a\npopulation: {max_users: 1}\n---\nexperiment: b\npopulation: {fraction: 0.5}\n"
    )
    (tmp_path / "list.yml").write_text("- experiment: c\n  variants: {x: 1}\n- experiment: d\n  ends_at: 2030-01-01T00:00:00Z\n")
    assert [e.experiment for e in load_file(tmp_path / "multi.yaml")] == ["a", "b"]
    assert sorted(load_dir(tmp_path)) == ["a", "b", "c", "d"]


def test_load_errors_name_the_file(tmp_path):
    (tmp_path / "good.yaml").write_text("experiment: a\npopulation: {max_users: 1}\n")
    (tmp_path / "bad.yaml").write_text("experiment: b\npopulation: {max_users: 1}\n---\nexperiment: c\npopulation: {fraction: 3}\n")
    (tmp_path / "broken.yaml").write_text("experiment: [unclosed\n")
    (tmp_path / "dup.yaml").write_text("experiment: a\npopulation: {max_users: 2}\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.yaml").write_text("not: valid")
    with pytest.raises(RegistrationError) as info:
        load_dir(tmp_path)
    text = [str(e) for e in info.value.errors]
    assert any(t.startswith(f"{tmp_path / 'bad.yaml'}[1]: population.fraction") for t in text), text
    assert any(str(tmp_path / "broken.yaml") in t and "invalid YAML" in t for t in text), text
    assert any("also registered in" in t for t in text), text
    assert not any(".hidden" in t for t in text)


def test_examples_validate_with_parser_and_schema():
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) >= 3
    schema = json.loads(SCHEMA_FILE.read_text())
    loaded = load_dir(EXAMPLES)
    assert "subs-mvp-crm-qa" in loaded
    for file in files:
        for raw in load_yaml_documents(file.read_bytes(), str(file)):
            assert schema_errors(schema, raw) == [], file
            e = parse_registration(raw)
            assert schema_errors(schema, registration_to_dict(e)) == []
    qa = loaded["subs-mvp-crm-qa"]
    assert qa.ends_at is None or qa.ends_at > 4_000_000_000_000  # quick start must work today
    kinds = {r for e in loaded.values() for r in e.active_rules()}
    assert {"allowlist_breach", "fraction_exceeded", "segment_breach", "sample_ratio_mismatch"} <= kinds


def test_schema_file_is_generated_and_well_formed():
    on_disk = json.loads(SCHEMA_FILE.read_text())
    assert on_disk == registration_json_schema(), "regenerate: python -m detector.registration.schema"
    assert on_disk["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    from detector.registration.model import POPULATION_FIELDS, TOP_LEVEL_FIELDS

    assert set(on_disk["properties"]) == set(TOP_LEVEL_FIELDS)
    pop = on_disk["properties"]["population"]
    assert set(pop["properties"]) == set(POPULATION_FIELDS)


def test_registration_equality_is_value_based():
    assert parse_registration(VALID) == parse_registration(json.loads(json.dumps(VALID)))
    assert isinstance(parse_registration(VALID), CompiledRegistration)
