"""LaunchDarkly multi-kind contexts on the real broker, keyed per registration.

Two experiments evaluated for the same multi-kind contexts (`user` + `organization`): one is
registered with `identity: {context_kind: organization}` and an allowlist of one organization,
the other names no kind (the source's default, `user`) and allows one user. The worker must
count organizations for the first and users for the second: the blast radius of each
allowlist incident is exactly the other organizations, resp. the other users.
"""

from __future__ import annotations

import json

from harness import now_ms, wait_until

from detector.simulate import register_via_api, wait_registered

TOKEN = "e2e-ld-kind-token"
SOURCES = "exposure.assignments=native,ld.export=launchdarkly"
BY_ORG, BY_USER = "org-pricing-qa", "user-pricing-qa"
REGISTRATIONS = [
    {"experiment": BY_ORG, "population": {"allowlist": ["org-qa"]}, "severity": "critical",
     "identity": {"context_kind": "organization"}},
    {"experiment": BY_USER, "population": {"allowlist": ["u-qa"]}, "severity": "critical"},
]


def _evaluation(flag: str, user: str, org: str, ts: int) -> bytes:
    return json.dumps({"kind": "feature", "creationDate": ts, "key": flag, "version": 3,
                       "contextKeys": {"user": user, "organization": org}, "variation": 1, "value": "treatment",
                       "default": "control", "reason": {"kind": "RULE_MATCH", "inExperiment": True}}).encode()


def test_each_experiment_counts_the_context_kind_its_registration_names(workers, ns, producer):
    w = workers(env={"DETECTOR_API_TOKEN": TOKEN, "DETECTOR_SOURCES": SOURCES})
    register_via_api(w.url, TOKEN, REGISTRATIONS)
    wait_registered(w.url, [BY_ORG, BY_USER], token=TOKEN)

    ts = now_ms()
    topic = ns.topic("ld.export")
    orgs = ["org-qa"] * 10 + ["org-a"] * 10 + ["org-b"] * 10
    for i, org in enumerate(orgs):  # 30 users of three organizations; only org-qa may see it
        producer.p.send(topic, key=None, value=_evaluation(BY_ORG, f"u-{i:03d}", org, ts))
    for user in ["u-qa"] + [f"v-{i:03d}" for i in range(20)]:  # 21 users of the allowed organization
        producer.p.send(topic, key=None, value=_evaluation(BY_USER, user, "org-qa", ts))
    producer.p.flush()

    def radius(experiment: str, count: int):
        code, listing = w.get(f"/v1/incidents?experiment={experiment}")
        if code != 200:
            return None
        found = [i for i in listing["incidents"] if i["rule"] == "allowlist_breach"]
        return found if found and found[0]["blast_radius"]["count"] >= count else None

    for experiment, want in ((BY_ORG, {"org-a", "org-b"}), (BY_USER, {f"v-{i:03d}" for i in range(20)})):
        [incident] = wait_until(lambda e=experiment, n=len(want): radius(e, n), 60, 0.2,
                                f"the allowlist incident of {experiment}")
        code, body = w.get(f"/v1/incidents/{incident['id']}/blast-radius?limit=100")
        assert code == 200, body
        assert body["count"] == len(want) and {u["user_id"] for u in body["users"]} == want, body
