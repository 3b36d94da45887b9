"""LaunchDarkly: each evaluation of a multi-kind context is keyed by the context kind its
experiment's registration names (`identity.context_kind`), else the source's option, else `user`."""

from __future__ import annotations

import copy
import json

import pytest
from source_fixtures import LAUNCHDARKLY, TS

from detector.events import Assignment
from detector.registration.model import parse_registration
from detector.sources import Source, decoder_for

REGISTRATIONS = {
    "org-pricing": parse_registration({"experiment": "org-pricing", "population": {"max_users": 5},
                                       "identity": {"context_kind": "organization"}}),
    "user-checkout": parse_registration({"experiment": "user-checkout", "population": {"max_users": 5},
                                         "identity": {"context_kind": "user"}}),
    "no-kind": parse_registration({"experiment": "no-kind", "population": {"max_users": 5}}),
}


def context_kind_of(experiment: str) -> str | None:
    """What the worker passes (IngestService.context_kind_of): the registration's kind, or None."""
    registration = REGISTRATIONS.get(experiment)
    return None if registration is None else registration.context_kind


def _event(flag: str, **contexts) -> bytes:
    doc = copy.deepcopy(LAUNCHDARKLY)
    doc["key"] = flag
    doc["contextKeys"] = contexts or {"user": "user-1", "organization": "org-acme"}
    return json.dumps(doc).encode()


def _users(dec, values):
    events, _, rejects = dec.decode_batch(values, [0] * len(values))
    out = iter(events)
    bad = dict(rejects)
    return [bad[i].kind if i in bad else next(out).user_id for i in range(len(values))]


FLAGS = ["org-pricing", "user-checkout", "no-kind", "unregistered"]


@pytest.mark.parametrize("path", ["fast", "per_record"])
@pytest.mark.parametrize("n", [1, 3, 700])  # one record, a small batch, more than one fast block
def test_multi_kind_context_fans_out_by_the_kind_each_registration_names(path, n):
    dec = decoder_for("launchdarkly", {}, context_kind_of)
    if path == "per_record":
        dec._fast = None
    values = [_event(FLAGS[i % 4]) for i in range(n)]
    want = [{"org-pricing": "org-acme"}.get(FLAGS[i % 4], "user-1") for i in range(n)]
    assert _users(dec, values) == want


def test_the_source_option_is_the_default_for_experiments_whose_registration_names_no_kind():
    dec = decoder_for("launchdarkly", {"context_kind": "organization"}, context_kind_of)
    values = [_event(f) for f in FLAGS] * 200
    assert _users(dec, values) == ["org-acme", "user-1", "org-acme", "org-acme"] * 200


def test_without_registrations_the_option_or_user_decides():
    assert _users(decoder_for("launchdarkly"), [_event(f) for f in FLAGS]) == ["user-1"] * 4
    assert _users(Source("t", "launchdarkly", {"context_kind": "organization"}).decoder(),
                  [_event(f) for f in FLAGS]) == ["org-acme"] * 4


def test_an_evaluation_without_the_named_kind_is_no_identity_not_another_kind():
    dec = decoder_for("launchdarkly", {}, context_kind_of)
    values = [_event("org-pricing", user="user-1"), _event("user-checkout", organization="org-acme"),
              _event("org-pricing", user="user-2", organization="org-b")]
    assert _users(dec, values) == ["no_identity", "no_identity", "org-b"]
    rejected = dec.decode_one(values[0])
    assert "'organization'" in rejected.reason


def test_a_change_of_kind_applies_to_the_events_decoded_after_it():
    kinds = {"org-pricing": "organization"}
    dec = decoder_for("launchdarkly", {}, kinds.get)
    values = [_event("org-pricing")] * 600
    assert set(_users(dec, values)) == {"org-acme"}
    kinds["org-pricing"] = "user"  # the registration was updated
    assert set(_users(dec, values)) == {"user-1"}
    del kinds["org-pricing"]  # deleted: the source's default again
    assert set(_users(dec, values)) == {"user-1"}


def test_full_context_objects_use_the_registration_kind_too():
    doc = copy.deepcopy(LAUNCHDARKLY)
    del doc["contextKeys"]
    doc["key"] = "org-pricing"
    doc["context"] = {"kind": "multi", "user": {"key": "user-1"}, "organization": {"key": "org-acme", "name": "Acme"}}
    ev = decoder_for("launchdarkly", {}, context_kind_of).decode_one(json.dumps(doc).encode())
    assert isinstance(ev, Assignment) and (ev.user_id, ev.ts) == ("org-acme", TS)


def test_the_kind_is_asked_once_per_experiment_per_block_on_the_fast_path():
    asked = []

    def counting(experiment):
        asked.append(experiment)
        return context_kind_of(experiment)

    dec = decoder_for("launchdarkly", {}, counting)
    _users(dec, [_event(FLAGS[i % 4]) for i in range(400)])
    assert sorted(asked) == sorted(FLAGS)
