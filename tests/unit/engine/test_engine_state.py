"""Dedup, sketches, serialisation, merge, hashing."""

import math
import random

import numpy as np

from detector.engine import EngineConfig, ExperimentState, observe, process_batch
from detector.engine import stats
from detector.engine.bloom import ScalableBloom
from detector.engine.hashing import hash64, hash64_one
from detector.registration.compiled import CompiledRegistration
from tests.unit.engine.helpers import T0, ev


def test_hash64_vectorised_equals_scalar_reference():
    keys = ["", "a", "héllo", "日本語", "x" * 8, "x" * 9, "12345678" * 5, "u-1", "u-2", "\ud800"]
    got = hash64(keys).tolist()
    assert got == [hash64_one(k) for k in keys]
    assert hash64(["abc"]).tolist() == hash64(["abc", "abd"]).tolist()[:1]
    assert len(set(hash64([str(i) for i in range(50000)]).tolist())) == 50000
    # pinned value: the hash must never change (it keys checkpointed filters)
    assert hash64_one("user-1") == hash64(["user-1"]).tolist()[0]


def test_bloom_no_false_negatives_and_bounded_false_positives():
    b = ScalableBloom(1024)
    keys = hash64([f"k{i}" for i in range(30000)])
    new = b.add_new(keys)
    assert b.stages > 1
    assert b.contains(keys).all()
    assert new.mean() > 0.98
    assert not b.add_new(keys).any()
    others = hash64([f"o{i}" for i in range(20000)])
    assert b.contains(others).mean() < 0.02
    b2 = ScalableBloom.from_obj(b.to_obj())
    assert b2.contains(keys).all()


def _stream(n_users, n_events, seed=1, enrolled_every=10):
    rng = random.Random(seed)
    out = []
    for i in range(n_events):
        u = rng.randrange(n_users)
        enr = u % enrolled_every == 0
        out.append(ev(f"user-{u}", enrolled=enr, variant=("a", "b")[u % 2] if enr else None, ts=T0 + i))
    return out


def test_repeats_never_count_twice_exact_and_sketch():
    for cfg in (EngineConfig(), EngineConfig(exact_limit=50)):
        st = ExperimentState.new("exp")
        evs = _stream(3000, 30000)
        for i in range(0, len(evs), 700):
            process_batch(st, None, evs[i:i + 700], cfg)
        true_n = len({e.user_id for e in evs})
        true_s = len({e.user_id for e in evs if e.enrolled})
        assert st.n <= true_n and st.n >= 0.98 * true_n
        assert st.s <= true_s and st.s >= 0.98 * true_s
        assert st.events == 30000


def test_round_trip_exact_bytes_and_identical_continuation():
    exp = CompiledRegistration("exp", allowlist=frozenset({"user-0"}), fraction=0.1, variants={"a": 0.5, "b": 0.5},
                      segments={"c": frozenset({"x"})}, starts_at=T0, ends_at=T0 + 10**9)
    for cfg in (EngineConfig(), EngineConfig(exact_limit=50, blast_radius_limit=5)):
        evs = _stream(2000, 8000)
        a = ExperimentState.new("exp")
        for i in range(0, 4000, 500):
            process_batch(a, exp, evs[i:i + 500], cfg)
        blob = a.to_bytes()
        b = ExperimentState.from_bytes(blob)
        assert b.to_bytes() == blob
        fa, fb = [], []
        for i in range(4000, 8000, 500):
            fa += process_batch(a, exp, evs[i:i + 500], cfg)
            fb += process_batch(b, exp, evs[i:i + 500], cfg)
        assert [f.to_dict() for f in fa] == [f.to_dict() for f in fb]
        assert a.to_bytes() == b.to_bytes()
        assert observe(a, exp) == observe(b, exp)


def test_state_is_compact():
    cfg = EngineConfig()
    st = ExperimentState.new("exp")
    evs = _stream(100000, 200000, enrolled_every=100)
    for i in range(0, len(evs), 5000):
        process_batch(st, CompiledRegistration("exp", fraction=0.01), evs[i:i + 5000], cfg)
    size = len(st.to_bytes())
    assert size <= 16 * 1024 + 2 * st.n, size  # target 16 KiB + 2 B/user


def test_merge_exact_union():
    a, b = ExperimentState.new("exp"), ExperimentState.new("exp")
    process_batch(a, None, [ev("u1", variant="a"), ev("u2", enrolled=False)])
    process_batch(b, None, [ev("u1", variant="b"), ev("u3", variant="b", ts=T0 - 5)])
    a.merge(b)
    assert a.n == 3 and a.s == 2 and a.variants == {"a": 1, "b": 1}
    assert a.first_ts == T0 - 5
    # unregistered keeps no per-user records (issue 16): its blast radius is the enrolled count + a sample
    assert list(a.offenders()) == [] and a.offender_count == 0
    assert a.rule_count["unregistered"] == 2 and set(a.rule_samples["unregistered"]) == {"u1", "u3"}


def test_merge_sketch_disjoint_partitions():
    cfg = EngineConfig(exact_limit=20)
    a, b = ExperimentState.new("exp"), ExperimentState.new("exp")
    ea = [ev(f"a{i}", variant="x") for i in range(500)]
    eb = [ev(f"b{i}", variant="y") for i in range(300)]
    process_batch(a, None, ea, cfg)
    process_batch(b, None, eb, cfg)
    a.merge(b, cfg)
    assert 780 <= a.s <= 800 and 780 <= a.n <= 800
    assert abs(a.enrolled_estimate() - 800) < 80
    assert a.enrolled_lower_bound() <= 800
    # merged filter knows both sides' users
    before = a.n
    process_batch(a, None, ea[:100] + eb[:100], cfg)
    assert a.n == before
    c = ExperimentState.from_bytes(a.to_bytes())
    assert c.to_bytes() == a.to_bytes()



def test_merge_sketch_overlapping_users_counts_each_once():
    """Union of user sets: a user on both sides is one user, enrolled if either side saw them enrol."""
    cfg = EngineConfig(exact_limit=20)
    a, b = ExperimentState.new("exp"), ExperimentState.new("exp")
    process_batch(a, None, [ev(f"u{i}", enrolled=i < 300) for i in range(600)], cfg)  # u0..u299 enrolled
    process_batch(b, None, [ev(f"u{i}", enrolled=i >= 400) for i in range(200, 800)], cfg)  # u400..u799 enrolled
    a.merge(b, cfg)
    assert a.n == 800 and a.s == 700  # u300..u399 never enrolled
    assert a.enrolled_lower_bound() == 700 and abs(a.enrolled_estimate() - 700) < 1

def test_srm_closed_form_equals_sequential_product():
    # Lindon-Malek BF as a product of posterior predictive ratios == closed form
    p = [0.5, 0.3, 0.2]
    k = 100.0
    rng = np.random.default_rng(3)
    seq = rng.choice(3, size=400, p=[0.45, 0.35, 0.2])
    a = [k * q for q in p]
    counts = [0, 0, 0]
    log_bf = 0.0
    for x in seq:
        log_bf += math.log((a[x] + counts[x]) / (sum(a) + sum(counts))) - math.log(p[x])
        counts[x] += 1
    assert abs(stats.srm_log_bf(counts, p, k) - log_bf) < 1e-9


def test_mixture_sprt_matches_notes_formula():
    p0 = 0.01
    alts = stats.fraction_alternatives(p0)
    s, n = 7, 300
    ps = [min(r * p0, 1 - (1 - p0) / r) for r in stats.RATIOS]  # capped below 1
    pis = [w / sum(stats.RATIO_WEIGHTS) for w in stats.RATIO_WEIGHTS]  # the prior over ratios
    direct = math.log(sum(pi * math.exp(s * math.log(p / p0) + (n - s) * math.log((1 - p) / (1 - p0)))
                          for p, pi in zip(ps, pis)))
    assert abs(stats.log_mixture(s, n, alts) - direct) < 1e-9
    for p0 in (0.01, 0.2, 0.5, 0.9):  # one alternative per ratio, each strictly between p0 and 1
        al = stats.fraction_alternatives(p0)
        assert len(al) == len(stats.RATIOS)
        assert all(p0 < math.exp(a) * p0 < 1 for a, _ in al)
