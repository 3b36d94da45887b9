"""DETECTOR_FLAG_SOURCES, reading file and ConfigMap-directory sources, the registration's `flag` field."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from detector.flags.model import FormatError
from detector.flags.sources import SourceSpec, parse_sources, read_path, request_headers
from detector.flags.watcher import users_per_day
from detector.registration.errors import RegistrationError
from detector.registration.model import parse_registration, registration_to_dict

FIX = Path(__file__).parent / "fixtures"


def test_parse_sources_names_kinds_and_errors():
    specs = parse_sources("growthbook=https://gb/api/features/sdk-1, flagd=/etc/flagd ,growthbook=https://gb2/x,"
                          "unleash.eu=https://u/api/client/features,growthbook.push=webhook")
    assert [(s.name, s.kind) for s in specs] == [("growthbook", "growthbook"), ("flagd", "flagd"),
                                                 ("growthbook-2", "growthbook"), ("unleash.eu", "unleash"),
                                                 ("growthbook.push", "growthbook")]
    assert specs[0].is_url and not specs[1].is_url and specs[4].push_only
    assert specs[2].matches("growthbook") and specs[2].matches("growthbook-2") and not specs[2].matches("flagd")
    assert parse_sources("") == []
    for bad, why in (("launchdarkly=https://x", "unknown kind"), ("flagd", "kind=location"),
                     ("flagd.a=/x,flagd.a=/y", "repeated")):
        with pytest.raises(ValueError, match=why):
            parse_sources(bad)


def test_credentials_go_in_headers():
    un = request_headers(SourceSpec("unleash", "unleash", "https://u"), unleash_token="default:production.x")
    assert un["Authorization"] == "default:production.x"
    fd = request_headers(SourceSpec("flagd", "flagd", "https://f"), flagd_token="t")
    assert fd["Authorization"] == "Bearer t"
    assert "Authorization" not in request_headers(SourceSpec("growthbook", "growthbook", "https://g"))


def test_configmap_directory_skips_dot_entries_and_merges_files(tmp_path):
    # What Kubernetes mounts: ..<timestamp>/ with the files, ..data -> it, and file -> ..data/file links.
    stamp = tmp_path / "..2026_12_02_14_02_00.1"
    stamp.mkdir()
    doc = json.loads((FIX / "flagd_flags.json").read_text())
    (stamp / "crm.json").write_text(json.dumps({"flags": {"crm-winback-email-qa": doc["flags"]["crm-winback-email-qa"]}}))
    (stamp / "ui.yaml").write_text("flags:\n  banner:\n    state: ENABLED\n    variants: {on: true, off: false}\n"
                                   "    defaultVariant: 'on'\n")
    os.symlink(stamp.name, tmp_path / "..data")
    for f in ("crm.json", "ui.yaml"):
        os.symlink(f"..data/{f}", tmp_path / f)
    digest, merged = read_path(SourceSpec("flagd", "flagd", str(tmp_path)))
    assert set(merged.flags) == {"crm-winback-email-qa", "banner"}
    assert merged.flags["banner"].rules[0].share == 1.0
    assert read_path(SourceSpec("flagd", "flagd", str(tmp_path)))[0] == digest  # stable while unchanged
    (stamp / "ui.yaml").write_text("flags: [not, a, mapping]\n")
    with pytest.raises(FormatError, match="ui.yaml"):
        read_path(SourceSpec("flagd", "flagd", str(tmp_path)))


def test_registration_flag_field_round_trips_and_is_validated():
    raw = {"experiment": "e", "population": {"allowlist": ["a"]}, "flag": {"source": "growthbook", "key": "crm.flag"}}
    exp = parse_registration(raw)
    assert (exp.flag.source, exp.flag.key) == ("growthbook", "crm.flag")
    assert registration_to_dict(exp)["flag"] == {"source": "growthbook", "key": "crm.flag"}
    assert parse_registration(registration_to_dict(exp)) == exp
    assert parse_registration({"experiment": "e", "population": {"allowlist": ["a"]}}).flag is None
    assert parse_registration({**raw, "flag": {"source": "unleash"}}).flag.key == "e"  # default key: the experiment
    with pytest.raises(RegistrationError, match="flag"):
        parse_registration({**raw, "flag": {"name": "x"}})


def test_users_per_day_needs_a_minute_of_traffic():
    assert users_per_day(None) == (None, None)
    st = SimpleNamespace(n=600, first_ts=0, last_ts=3_600_000, rule_first={"allowlist_breach": 1234})
    assert users_per_day(st) == (pytest.approx(14_400), 1234)
    assert users_per_day(SimpleNamespace(n=5, first_ts=0, last_ts=10_000, rule_first={}))[0] is None


def test_a_registration_naming_an_unconfigured_source_is_a_risk():
    from detector.flags.sources import unconfigured_flag_source

    specs = parse_sources("growthbook=https://gb/x,unleash.eu=https://u/y")
    base = {"experiment": "e", "population": {"allowlist": ["a"]}}
    assert unconfigured_flag_source(parse_registration(base), specs) == []
    for ok in ("growthbook", "unleash", "unleash.eu"):
        assert unconfigured_flag_source(parse_registration({**base, "flag": {"source": ok}}), specs) == []
    [risk] = unconfigured_flag_source(parse_registration({**base, "flag": {"source": "flagd"}}), specs)
    assert risk.code == "unknown_flag_source" and risk.field == "flag.source" and "growthbook" in risk.message
    [risk] = unconfigured_flag_source(parse_registration({**base, "flag": {"source": "flagd"}}), [])
    assert "DETECTOR_FLAG_SOURCES is unset" in risk.message
