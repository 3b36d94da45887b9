"""The small-batch fast paths give the same answers and the same state as the general paths."""

import random

import numpy as np
import pytest

from detector.engine import EngineConfig, ExperimentState, observe, process_batch
from detector.engine.fpset import UserSet
from detector.engine.hashing import hash64, hash64_list, hash64_one
from detector.registration.compiled import CompiledRegistration
from tests.unit.engine.helpers import T0, ev


def test_hash64_list_equals_vectorised():
    rng = random.Random(5)
    keys = ["", "a", "héllo", "日本語", "\ud800", "y" * 300] + [
        "".join(rng.choice("abcxyz-_019é") for _ in range(rng.randrange(1, 40))) for _ in range(500)]
    assert hash64_list(keys) == hash64(keys).tolist() == [hash64_one(k) for k in keys]


def test_user_set_round_trip_and_false_positive_rate():
    s = UserSet()
    keys = s.keys(hash64([f"k{i}" for i in range(200_000)]))
    new, _ = s.upsert(keys, np.zeros(len(keys), bool))
    assert new.mean() > 0.9998  # false positive rate ~ n / 2^30
    again, _ = s.upsert(keys, np.zeros(len(keys), bool))
    assert not again.any()  # no false negatives
    o = s.to_obj()
    t = UserSet.from_obj(o)
    assert t.values().tolist() == s.values().tolist() and t.to_obj() == o
    others = s.keys(hash64([f"o{i}" for i in range(50_000)]))
    fresh, _ = t.upsert(others, np.zeros(len(others), bool))
    assert fresh.mean() > 1 - 1e-3


def _sequential_reference(ops):
    """What a user set must answer, user by user: {key: enrolled} as the truth."""
    seen: dict[int, bool] = {}
    out = []
    for keys, flags in ops:
        nu, ne = [], []
        for k, e in zip(keys, flags):
            if k not in seen:
                seen[k] = e
                nu.append(True), ne.append(e)
            else:
                up = e and not seen[k]
                seen[k] = seen[k] or e
                nu.append(False), ne.append(up)
        out.append((nu, ne))
    return out, seen


def test_user_set_small_and_vector_paths_agree_with_one_at_a_time():
    rng = random.Random(11)
    small, vec = UserSet(13), UserSet(13)  # 12-bit fingerprints: collisions happen
    ops = []
    for _ in range(400):
        k = rng.choice([1, 2, 3, 5, 20, 300])
        keys = [rng.randrange(1 << 12) << 1 for _ in range(k)]
        if rng.random() < 0.3:
            keys += keys[: k // 2 + 1]  # the same key twice in one call, enrolled or not
        flags = [rng.random() < 0.4 for _ in keys]
        ops.append((keys, flags))
    want, truth = _sequential_reference(ops)
    for (keys, flags), (wnu, wne) in zip(ops, want):
        assert small.upsert_small(list(keys), list(flags)) == (wnu, wne)
        nu, ne = vec.upsert(np.array(keys, np.uint32), np.array(flags, bool))
        assert (nu.tolist(), ne.tolist()) == (wnu, wne)
    expect = sorted(k | int(e) for k, e in truth.items())
    assert small.values().tolist() == vec.values().tolist() == expect
    assert UserSet.from_obj(vec.to_obj()).values().tolist() == expect


def test_user_set_merge_keeps_one_entry_a_user_enrolled_if_either_side_is():
    a, b = UserSet(), UserSet()
    a.upsert(np.array([2, 4, 6], np.uint32), np.array([False, True, False]))
    b.upsert(np.array([2, 6, 8], np.uint32), np.array([True, False, False]))
    a.merge(b)
    assert a.values().tolist() == [3, 5, 6, 8]


def test_user_set_serialises_within_the_state_budget_whatever_the_split():
    """16 KiB + 2 bytes a user is the whole state's budget; one entry a user keeps the set inside it."""
    for share in (0.0, 1.0):
        s = UserSet()
        keys = s.keys(hash64([f"u{i}" for i in range(100_000)]))
        s.upsert(keys, np.random.default_rng(1).random(len(keys)) < share)
        o = s.to_obj()
        assert len(o[3]) + len(o[4]) < 16384 + 2 * len(keys), share


EXPS = [
    None,
    CompiledRegistration("exp", allowlist=frozenset({"u1", "u2", "u3"}), max_users=40),
    CompiledRegistration("exp", fraction=0.05, variants={"a": 0.5, "b": 0.5}, starts_at=T0 + 50, ends_at=T0 + 5000),
    CompiledRegistration("exp", segments={"c": frozenset({"x"})}, variants={"a": 0.2, "b": 0.8}, fraction=0.5),
]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("exp", EXPS, ids=["unregistered", "allowlist", "fraction", "segments"])
def test_process_batch_fast_path_equals_general_path(seed, exp):
    rng = random.Random(seed)
    n_users = rng.choice([30, 400, 3000])
    p = rng.choice([0.05, 0.5, 1.0])
    evs = []
    for i in range(4000):
        enr = rng.random() < p
        evs.append(ev(f"user-{rng.randrange(n_users)}", enrolled=enr, variant=rng.choice("ab"), ts=T0 + i,
                      attrs=rng.choice([None, {"c": "x"}, {"c": "y"}])))
    fast = EngineConfig(exact_limit=50, small_batch_keys=10**9)  # always the pure-Python hashing path
    slow = EngineConfig(exact_limit=50, small_batch_keys=0)  # always numpy
    a, b = ExperimentState.new("exp"), ExperimentState.new("exp")
    fa, fb = [], []
    i = 0
    while i < len(evs):
        k = rng.choice([1, 2, 3, 5, 8, 30, 300])
        fa += [f.to_dict() for f in process_batch(a, exp, evs[i:i + k], fast)]
        fb += [f.to_dict() for f in process_batch(b, exp, evs[i:i + k], slow)]
        i += k
    assert fa == fb
    assert a.to_bytes() == b.to_bytes()
    assert observe(a, exp, fast) == observe(b, exp, slow)
    assert list(a.offenders()) == list(b.offenders())


def test_registration_cache_follows_identity():
    st = ExperimentState.new("exp")
    e1 = CompiledRegistration("exp", allowlist=frozenset({"a"}))
    assert process_batch(st, e1, [ev("a")]) == []
    e2 = CompiledRegistration("exp", allowlist=frozenset({"b"}))  # a new object: a new plan
    assert [f.rule for f in process_batch(st, e2, [ev("c", ts=T0 + 1)])] == ["allowlist_breach"]
    f = process_batch(st, e2, [ev("d", ts=T0 + 2)])[0]
    f.expected["allowlist"].append("mutated")  # findings do not share the cached dict
    assert process_batch(st, e2, [ev("e", ts=T0 + 3)])[0].expected["allowlist"] == ["b"]
