"""State survives rebalances and restarts: on the real broker, with real worker processes.

The detector's batch reader keeps per-experiment state in memory, checkpoints it with its
input offset to a compacted topic and restores it on assignment. These tests disturb a
running deployment (a second worker joins and leaves; SIGTERM; SIGKILL in the middle of a
backlog) and then compare what `GET /v1/experiments/{experiment}` reports with the counts
computed from the produced events: distinct eligible and enrolled users, users per variant,
the number of events applied (which a double-applied replay would inflate) and the rule
states. Small experiments are counted exactly; `rec-big` runs in the sketch regime, where
counts are lower bounds within 1%.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from harness import BOOTSTRAP, now_ms, wait_until

REGISTRATIONS = {
    "rec-small": {"variants": {"control": 0.5, "treatment": 0.5}},
    "rec-big": {"variants": {"control": 0.5, "treatment": 0.5}},
    "rec-qa": {"population": {"allowlist": [f"qa-{i}" for i in range(10)]}},
    "rec-frac": {"population": {"fraction": 0.5}, "tolerance": 0.5},
}
UNREGISTERED = "rec-unreg"
EXPERIMENTS = [*REGISTRATIONS, UNREGISTERED]
SKETCHED = {"rec-big"}


def _users() -> dict[str, list[tuple[str, str | None, bool]]]:
    """experiment -> [(user_id, variant, enrolled)]; each user always gets the same answer."""
    out = {
        "rec-small": [(f"s{i}", "control" if i % 2 else "treatment", True) for i in range(60)],
        "rec-big": [(f"b{i:05d}", "control" if i % 2 else "treatment", True) for i in range(3000)],
        "rec-qa": [(f"qa-{i}", "treatment", True) for i in range(10)] + [(f"x-{i}", "treatment", True) for i in range(5)],
        "rec-frac": [(f"f{i}", "treatment" if i % 2 else None, bool(i % 2)) for i in range(80)],
        UNREGISTERED: [(f"n{i}", "on", True) for i in range(30)],
    }
    return out


def make_phases(n_phases: int = 3) -> list[list[dict]]:
    """Events in phases; every user shows up in several phases (repeat exposures)."""
    users = _users()
    phases: list[list[dict]] = [[] for _ in range(n_phases)]
    t = now_ms()
    for exp, us in users.items():
        for k, (uid, variant, enrolled) in enumerate(us):
            # first exposure in phase k % n, repeats in later phases
            for p in range(k % n_phases, n_phases):
                if p == k % n_phases or (k + p) % 2 == 0:
                    phases[p].append({"experiment": exp, "user_id": uid, "variant": variant, "enrolled": enrolled,
                                      "ts": t + p * 1000 + k % 997})
    return phases


def expected_from(events: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for exp in EXPERIMENTS:
        evs = [e for e in events if e["experiment"] == exp]
        eligible = {e["user_id"] for e in evs}
        first_variant: dict[str, str | None] = {}
        for e in evs:
            if e["enrolled"]:
                first_variant.setdefault(e["user_id"], e["variant"])
        variants: dict[str, int] = {}
        for v in first_variant.values():
            key = "(none)" if v is None else v
            variants[key] = variants.get(key, 0) + 1
        outsiders = sum(1 for u in first_variant if u.startswith("x-"))
        rules = {
            "rec-qa": {"allowlist_breach": ("firing", outsiders)},
            UNREGISTERED: {"unregistered": ("firing", len(first_variant))},
            "rec-small": {"sample_ratio_mismatch": ("ok", 0)},
            "rec-big": {"sample_ratio_mismatch": ("ok", 0)},
            "rec-frac": {"fraction_exceeded": ("ok", 0)},
        }[exp]
        if exp == "rec-qa" and not outsiders:
            rules = {"allowlist_breach": ("ok", 0)}
        out[exp] = {"events": len(evs), "eligible_users": len(eligible), "enrolled_users": len(first_variant),
                    "variants": variants, "rules": rules}
    return out


def observed(worker, exp: str) -> dict | None:
    code, body = worker.get(f"/v1/experiments/{exp}")
    if code != 200 or not isinstance(body, dict) or not body.get("observation"):
        return None
    return body["observation"]


def mismatches(worker, want: dict[str, dict]) -> list[str]:
    """Differences between the worker's observations and `want` (empty when equal)."""
    bad = []
    for exp, w in want.items():
        o = observed(worker, exp)
        if o is None:
            bad.append(f"{exp}: no observation")
            continue
        if o.get("events") != w["events"]:
            bad.append(f"{exp}: events {o.get('events')} != {w['events']}")
        for field in ("eligible_users", "enrolled_users"):
            if not _close(exp, o.get(field), w[field]):
                bad.append(f"{exp}: {field} {o.get(field)} != {w[field]}")
        got_v = o.get("variants") or {}
        for v in set(got_v) | set(w["variants"]):
            if not _close(exp, got_v.get(v, 0), w["variants"].get(v, 0)):
                bad.append(f"{exp}: variant {v} {got_v.get(v, 0)} != {w['variants'].get(v, 0)}")
        rules = o.get("rules") or {}
        for rule, (state, offenders) in w["rules"].items():
            r = rules.get(rule) or {}
            if r.get("state") != state:
                bad.append(f"{exp}: rule {rule} is {r.get('state')}, expected {state}")
            if offenders and r.get("offenders") != offenders:
                bad.append(f"{exp}: rule {rule} offenders {r.get('offenders')} != {offenders}")
    return bad


def _close(exp: str, got, want: int) -> bool:
    if got is None:
        return False
    if exp in SKETCHED:  # lower bounds with a tiny false-positive undercount
        return want * 0.99 <= got <= want
    return got == want


def wait_equal(worker, want: dict[str, dict], timeout: float = 90) -> None:
    last: list[str] = []

    def ok():
        nonlocal last
        last = mismatches(worker, want)
        return not last

    try:
        wait_until(ok, timeout, 0.5, "observations to match the produced events")
    except AssertionError:
        raise AssertionError("state differs from the produced events:\n  " + "\n  ".join(last)
                             + f"\n--- worker log ---\n{worker.tail(40)}") from None
    time.sleep(2.0)  # nothing more may arrive: a double-applied replay would show up here
    assert mismatches(worker, want) == []


def setup_namespace(ns, producer) -> None:
    from detector.registration.model import parse_registration
    from detector.registration.records import encode_record
    from detector.settings import Settings
    from detector.topics import ensure_topics

    asyncio.run(ensure_topics(Settings(kafka_bootstrap=BOOTSTRAP, topic_prefix=ns.prefix, app_id=ns.app_id,
                                       partitions=ns.partitions)))
    for exp, reg in REGISTRATIONS.items():
        e = parse_registration({"experiment": exp, **reg})
        producer.p.send(ns.topic("exposure.expectations"), key=exp.encode(), value=encode_record(e, "test", "test"))
    producer.p.flush()


def committed(ns) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    async def total() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            offs = await admin.list_consumer_group_offsets(ns.app_id)
        finally:
            await admin.close()
        return sum(o.offset for tp, o in offs.items() if tp.topic == ns.topic("exposure.assignments") and o.offset > 0)

    return asyncio.run(total())


@pytest.mark.timeout(400)
def test_state_after_a_worker_joins_and_leaves_equals_the_events(ns, producer, workers):
    setup_namespace(ns, producer)
    phases = make_phases(3)
    a = workers(name="a")
    producer.send_events(phases[0])
    wait_equal(a, expected_from(phases[0]))

    b = workers(name="b")  # joins: the group rebalances and b restores a's checkpoints
    _, ready_b = b.get("/readyz")
    assert ready_b["partitions"], "the second worker got no partitions"
    producer.send_events(phases[1])
    total = len(phases[0]) + len(phases[1])
    wait_until(lambda: committed(ns) >= total, 90, 0.5, "both workers to commit phase 2")

    b.stop()  # leaves: a gets b's partitions back from b's last checkpoint
    producer.send_events(phases[2])
    wait_equal(a, expected_from(phases[0] + phases[1] + phases[2]))


@pytest.mark.timeout(400)
def test_state_after_sigterm_and_sigkill_equals_the_events(ns, producer, workers):
    setup_namespace(ns, producer)
    phases = make_phases(3)
    a = workers(name="a")
    producer.send_events(phases[0])
    wait_equal(a, expected_from(phases[0]))
    a.stop()  # SIGTERM: final checkpoint and commit

    producer.send_events(phases[1])
    a2 = workers(name="a2")
    wait_equal(a2, expected_from(phases[0] + phases[1]))

    # SIGKILL in the middle of a backlog: whatever was applied but not checkpointed is replayed
    # by the next worker, and must be applied exactly once.
    before = (observed(a2, "rec-big") or {}).get("events", 0)
    backlog = phases[2] * 1  # the same users again, so counts stay known
    big_more = [dict(e, ts=e["ts"] + 5000) for e in phases[2] if e["experiment"] == "rec-big"] * 20
    producer.send_events(backlog + big_more)
    wait_until(lambda: (observed(a2, "rec-big") or {}).get("events", 0) > before, 60, 0.02, "a2 to start on the backlog")
    a2.kill(signal.SIGKILL)

    a3 = workers(name="a3")
    want = expected_from(phases[0] + phases[1] + phases[2] + big_more)
    wait_equal(a3, want)
