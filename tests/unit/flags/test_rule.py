"""config_exceeds_declaration: each way a configuration can exceed its registration, and a property:
a configuration within the declaration never fires."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from detector.registration.compiled import CompiledRegistration
from detector.flags import flagd, growthbook, unleash
from detector.flags.model import Condition, ConfiguredExposure, RuleExposure
from detector.flags.rule import RULE, compare, config_exceeds_declaration

FIX = Path(__file__).parent / "fixtures"
QA = tuple(f"qa-{i:03d}" for i in range(1, 6))
SEED = CompiledRegistration("crm-winback-email-qa", owner="crm", allowlist=frozenset(QA), max_users=5,
                   variants={"control": 0.5, "treatment": 0.5}, severity="critical")
FLAG = {"source": "growthbook", "key": "crm-winback-email-qa"}


def load(name):
    return json.loads((FIX / name).read_text())


def test_seed_configurations_are_within_the_seed_registration():
    for conf in (growthbook.read(load("growthbook_payload.json")).flags["crm-winback-email-qa"],
                 flagd.read(load("flagd_flags.json")).flags["crm-winback-email-qa"],
                 unleash.read(load("unleash_client_features.json")).flags["crm-winback-email-qa"]):
        assert config_exceeds_declaration(SEED, FLAG, conf, None, 1, 2) is None, conf.describe()


def test_coverage_one_on_the_launch_rule_pages_with_the_change_and_the_blast_radius():
    doc = load("growthbook_payload.json")
    before = growthbook.read(doc).flags["crm-winback-email-qa"]
    doc["features"]["crm-winback-email-qa"]["rules"][1]["coverage"] = 1.0
    after = growthbook.read(doc).flags["crm-winback-email-qa"]
    f = config_exceeds_declaration(SEED, FLAG, after, before, 1_000, 2_000, users_per_day=12_000)
    assert f is not None and f.rule == RULE == "config_exceeds_declaration"
    assert f.experiment == "crm-winback-email-qa" and f.severity == "critical"
    assert f.first_offending_event_at == 1_000 and f.detected_at == 2_000
    assert "allowlist-only" in f.summary and "growthbook:crm-winback-email-qa" in f.summary
    assert "0% of eligible traffic" in f.observed["before"] and "100% of eligible traffic" in f.observed["configuration"]
    assert f.observed["expected_blast_radius"] == "100% of eligible traffic; about 12,000 users a day at the current rate"
    no_rate = config_exceeds_declaration(SEED, FLAG, after, before, 1_000, 2_000)
    assert "100% of eligible traffic (no traffic rate known yet)" in no_rate.summary


def test_users_outside_the_allowlist_and_over_max_users():
    conf = ConfiguredExposure("unleash", "k", True, (RuleExposure(1, "userWithId", 1.0, QA + ("u-1", "u-2"), (),
                                                                   {"control": 0.5, "treatment": 0.5}),))
    f = config_exceeds_declaration(SEED, FLAG, conf, None, 1, 1)
    assert f.blast_radius == 2 and f.sample_ids == ("u-1", "u-2")
    assert any("outside the allowlist" in r for r in f.observed["reasons"])
    assert any("max_users 5" in r for r in f.observed["reasons"])
    assert "u-1" not in f.summary  # user ids stay out of the summary (it is logged and shown widely)


def test_fraction_variants_and_segments():
    exp = CompiledRegistration("e", fraction=0.1, tolerance=0.2, variants={"control": 0.5, "treatment": 0.5},
                      segments={"country": frozenset({"BR", "PT"})})
    ok = RuleExposure(1, "experiment", 0.12, None, (Condition("country", "in", ("BR",)),), {"control": 0.5, "treatment": 0.5})
    assert compare(exp, ConfiguredExposure("growthbook", "e", True, (ok,))).reasons == ()
    too_much = RuleExposure(1, "experiment", 0.13, None, ok.conditions, ok.split)
    assert "above the declared fraction" in compare(exp, ConfiguredExposure("g", "e", True, (too_much,))).reasons[0]
    skewed = RuleExposure(1, "experiment", 0.1, None, ok.conditions, {"control": 0.2, "treatment": 0.8})
    assert "split differs" in compare(exp, ConfiguredExposure("g", "e", True, (skewed,))).reasons[0]
    extra = RuleExposure(1, "experiment", 0.1, None, ok.conditions, {"control": 0.5, "treatment": 0.25, "v3": 0.25})
    assert "undeclared variant v3" in compare(exp, ConfiguredExposure("g", "e", True, (extra,))).reasons[0]
    wide = RuleExposure(1, "experiment", 0.1, None, (Condition("country", "in", ("BR", "US")),), ok.split)
    assert "country also US" in compare(exp, ConfiguredExposure("g", "e", True, (wide,))).reasons[0]
    none = RuleExposure(1, "experiment", 0.1, None, (), ok.split)
    assert "no condition on country" in compare(exp, ConfiguredExposure("g", "e", True, (none,))).reasons[0]
    # A regex on the attribute proves nothing either way: undetermined, not fired.
    regex = RuleExposure(1, "experiment", 0.1, None, (Condition("country", "other", text="country $regex ^B"),), ok.split)
    v = compare(exp, ConfiguredExposure("g", "e", True, (regex,)))
    assert v.reasons == () and "country" in v.undetermined[0]


def test_cannot_tell_and_off_are_never_judged():
    assert compare(SEED, ConfiguredExposure("g", "k", cannot_tell="saved group grp_x is not in the payload")) is None
    off = ConfiguredExposure("g", "k", enabled=False, rules=(RuleExposure(1, "force", 1.0),))
    assert config_exceeds_declaration(SEED, FLAG, off, None, 1, 1) is None


# ---- property: within the declaration, never fires ----------------------------------------------
_ids = st.text("abcdefghij0123456789-", min_size=1, max_size=8)
_values = st.sampled_from(["US", "BR", "PT", "DE", "IN", "ios", "android", "web"])


@st.composite
def declared_and_within(draw):
    allowlist = draw(st.one_of(st.none(), st.frozensets(_ids, min_size=1, max_size=8)))
    fraction = None if allowlist is not None else draw(st.one_of(st.none(), st.floats(0.001, 1.0)))
    tolerance = draw(st.sampled_from([0.0, 0.2]))
    names = draw(st.lists(st.sampled_from(["control", "treatment", "v3", "v4"]), min_size=1, max_size=4, unique=True))
    raw = [draw(st.integers(1, 10)) for _ in names]
    variants = draw(st.one_of(st.none(), st.just({n: w / sum(raw) for n, w in zip(names, raw)})))
    segs = draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(["country", "platform"]),
                                                     st.frozensets(_values, min_size=1, max_size=4), min_size=1)))
    exp = CompiledRegistration("e", allowlist=allowlist, max_users=len(allowlist) if allowlist and draw(st.booleans()) else None,
                      fraction=fraction, tolerance=tolerance, variants=variants, segments=segs)
    rules = []
    for i in range(draw(st.integers(0, 4))):
        split = dict(variants) if variants else draw(st.dictionaries(st.sampled_from(["a", "b"]), st.floats(0.1, 1), max_size=2))
        if allowlist is not None:
            users = tuple(draw(st.lists(st.sampled_from(sorted(allowlist)), min_size=1, unique=True)))
            rules.append(RuleExposure(i + 1, "userWithId", draw(st.floats(0, 1)), users, (), split))
            continue
        conds = [Condition(a, "in", tuple(draw(st.lists(st.sampled_from(sorted(v)), min_size=1, unique=True))))
                 for a, v in (segs or {}).items()]
        conds += draw(st.lists(st.builds(Condition, st.sampled_from(["age", "email"]), st.just("other"),
                                         st.just(()), st.just("narrowing")), max_size=2))
        top = 1.0 if fraction is None else fraction
        share = draw(st.floats(0.0, top))
        kind = draw(st.sampled_from(["experiment", "fractional", "flexibleRollout", "rollout"]))
        rules.append(RuleExposure(i + 1, kind, share, None, tuple(conds), split))
    enabled = draw(st.booleans()) if rules else True
    return exp, ConfiguredExposure(draw(st.sampled_from(["flagd", "growthbook", "unleash"])), "e", enabled, tuple(rules))


@settings(max_examples=400, deadline=None)
@given(declared_and_within())
def test_a_configuration_within_the_declaration_never_fires(case):
    exp, conf = case
    assert config_exceeds_declaration(exp, FLAG, conf, None, 1, 2) is None, compare(exp, conf)


def test_conditions_on_personal_attributes_are_described_without_their_values():
    conf = growthbook.read_feature("x", {"rules": [{"condition": {"email": {"$in": ["ann@example.com", "bob@example.com"]},
                                                                  "country": "US"}, "force": True}]})
    text = conf.describe()
    assert "ann@example.com" not in text and "email in 2 value(s)" in text and "country in [US]" in text
