"""Crash (issue 8, item 2): SIGKILL the worker five times while events and a breach flow.

After the restarts the state must equal a run without crashes (here: the engine run offline over
exactly the produced events), no event may be skipped or counted twice, and each incident must be
notified exactly once per state change, told apart by `webhook-id` (a receiver deduplicates by it;
a kill between the receiver's 2xx and the delivery record may repeat an id, which is counted).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter

import msgspec
from harness import now_ms, wait_until

from conftest import KafkaProducer2, create_topics, observed, registration_dir, webhook_ids, worker_env

from detector.engine import ExperimentState, observe, process_batch
from detector.events import Assignment
from detector.registration.model import parse_registration

EXP = "rel-crash"
GHOST = "rel-crash-ghost"
KILLS = int(os.environ.get("RELIABILITY_KILLS", "5"))
REGISTRATION = {
    "schema_version": 1, "experiment": EXP, "owner": "reliability",
    "population": {"allowlist": [f"u{i}" for i in range(200)], "max_users": 300},
    "severity": "critical",
}


class Flow(threading.Thread):
    """Produces events at a steady pace; users beyond u199 breach the allowlist, u300+ the cap."""

    def __init__(self, producer: KafkaProducer2, batches: int, per_batch: int = 40, pause: float = 0.1):
        super().__init__(daemon=True)
        self.p, self.batches, self.per_batch, self.pause = producer, batches, per_batch, pause
        self.sent: list[dict] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            rng = random.Random(8)
            for b in range(self.batches):
                t = now_ms()
                for j in range(self.per_batch):
                    i = b * self.per_batch + j
                    # Mostly allowlisted users, repeated; the breach grows slowly through the run.
                    uid = f"u{rng.randrange(200)}" if rng.random() < 0.9 else f"u{200 + i // 10}"
                    exp = GHOST if i % 25 == 0 else EXP
                    ev = {"experiment": exp, "user_id": uid, "variant": "ab"[i % 2], "ts": t + j}
                    self.p.event(ev)
                    self.sent.append(ev)
                self.p.flush()
                time.sleep(self.pause)
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def offline(events: list[dict], experiment: str, registration: dict | None) -> dict:
    exp = parse_registration(registration) if registration else None
    st = ExperimentState.new(experiment)
    evs = [Assignment(e["experiment"], e["user_id"], e["variant"], True, e["ts"]) for e in events
           if e["experiment"] == experiment]
    process_batch(st, exp, evs)
    return msgspec.to_builtins(observe(st, exp).observed)


COMPARE = ("events", "enrolled_users", "eligible_users", "variants", "out_of_target_users", "counting")


def test_five_sigkills_lose_and_repeat_nothing(workers, receiver, ns, tmp_path):
    create_topics(ns)
    env = worker_env(tmp_path, receiver, DETECTOR_EXPECTATIONS_DIR=registration_dir(tmp_path, REGISTRATION),
                     DETECTOR_CHECKPOINT_INTERVAL="0.3")
    w = workers(env=env, name="crash")
    producer = KafkaProducer2(ns)
    flow = Flow(producer, batches=int(os.environ.get("RELIABILITY_CRASH_BATCHES", "150")))
    flow.start()
    rng = random.Random()
    restarts = []
    try:
        for k in range(KILLS):
            time.sleep(rng.uniform(0.5, 3.0))
            w.kill(signal.SIGKILL)
            t = time.time()
            w.start(wait_ready=True, timeout=120)
            restarts.append(round(time.time() - t, 1))
        flow.join(timeout=300)
        assert not flow.is_alive() and flow.error is None, flow.error
    finally:
        producer.close()
    sent = flow.sent
    n_exp = sum(1 for e in sent if e["experiment"] == EXP)
    n_ghost = len(sent) - n_exp
    # No event skipped, none applied twice: the event counters are exact.
    wait_until(lambda: (observed(w, EXP) or {}).get("events") == n_exp
               and (observed(w, GHOST) or {}).get("events") == n_ghost, 90, 0.5,
               f"{n_exp}+{n_ghost} events after {KILLS} kills (restarts took {restarts} s)")
    for exp, reg in ((EXP, REGISTRATION), (GHOST, None)):
        got, want = observed(w, exp), offline(sent, exp, reg)
        assert {k: got[k] for k in COMPARE} == {k: want[k] for k in COMPARE}, exp

    # Exactly one firing notification per incident, one incident per breached rule.
    want_rules = {(EXP, "allowlist_breach"), (EXP, "max_users_exceeded"), (GHOST, "unregistered")}
    if offline(sent, EXP, REGISTRATION)["enrolled_users"] <= 300:
        want_rules.discard((EXP, "max_users_exceeded"))
    wait_until(lambda: {(b["experiment"], b["rule"]) for b in receiver.bodies()} >= want_rules, 60, 0.5, "webhooks")
    time.sleep(2)  # anything late or duplicated would arrive now
    bodies = receiver.bodies()
    assert {(b["experiment"], b["rule"]) for b in bodies} == want_rules
    incidents = {}
    for b in bodies:
        incidents.setdefault((b["experiment"], b["rule"]), set()).add(b["incident_id"] if "incident_id" in b else b["id"].split(":")[0])
    assert all(len(ids) == 1 for ids in incidents.values()), incidents
    ids = webhook_ids(receiver)
    distinct = set(ids)
    assert all(i.endswith(":firing:1") for i in distinct), distinct
    assert len(distinct) == len(want_rules), distinct
    dupes = {i: n for i, n in Counter(ids).items() if n > 1}
    assert sum(n - 1 for n in dupes.values()) <= KILLS, dupes
    print(f"\ncrash: {len(sent)} events, {KILLS} SIGKILLs, restarts took {restarts} s, "
          f"{len(ids)} deliveries of {len(distinct)} notifications, duplicates by webhook-id: {dupes}")
