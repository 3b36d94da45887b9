"""The simulated scenario, offline: valid registrations, and healthy experiments that stay healthy."""

from __future__ import annotations

import random

from detector.engine import ExperimentState, process_batch
from detector.events import Assignment
from detector.registration.model import parse_registration
from detector.simulate import _healthy_events, _Population, qa_accounts, registrations


def test_registrations_are_valid_and_the_qa_experiment_comes_first():
    docs = registrations("crm-qa", qa_users=5)
    exps = [parse_registration(d) for d in docs]
    assert exps[0].experiment == "crm-qa" and exps[0].allowlist == frozenset(qa_accounts(5))
    assert exps[0].max_users == 5
    assert len({e.experiment for e in exps}) == 4


def test_healthy_traffic_raises_no_finding():
    exps = {e.experiment: e for e in map(parse_registration, registrations()[1:])}
    pop = _Population(random.Random(3), 4000)
    states = {k: ExperimentState.new(k) for k in exps}
    batches: dict[str, list[Assignment]] = {k: [] for k in exps}
    t = 1_700_000_000_000
    for i in range(6000):
        u = pop.visitor()
        for ev in _healthy_events(u, pop.attrs[u], t + i):
            batches[ev["experiment"]].append(Assignment(ev["experiment"], ev["user_id"], ev.get("variant"),
                                                        ev.get("enrolled", True), ev["ts"], ev["attributes"]))
    findings = []
    for k, evs in batches.items():
        for j in range(0, len(evs), 200):
            findings += process_batch(states[k], exps[k], evs[j:j + 200])
    assert findings == []
    assert states["checkout-express-pay"].s > 100 and states["search-ranker-v3-br"].s > 100
