"""Generate a JSON-lines file of assignment events for replay benchmarks (deterministic).

    .venv/bin/python bench/stats_gen_events.py OUT.jsonl [--events 1000000] [--seed 7]

Traffic for the experiments under config/expectations/ plus one unregistered experiment:
each eligible user is evaluated ~4 times on average (repeat exposures), most
experiments healthy, and one incident: subs-mvp-crm-qa (allowlist of 3 QA accounts,
1% declared) goes to 100% of eligible users at 60% of the file.
"""

from __future__ import annotations

import argparse
import random

import msgspec

T0 = 1_726_000_000_000  # 2024-09-10


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    enc = msgspec.json.Encoder()
    # experiment -> (share of traffic, enrolled fraction, variants, attributes picker)
    exps = [
        ("checkout-redesign-rollout", 0.40, 0.10, ["control", "treatment"]),
        ("pricing-annual-discount", 0.15, 0.05, [None]),
        ("pricing-global-holdout", 0.10, 0.02, ["holdout"]),
        ("search-ranking-br-mobile", 0.15, 1.0, ["control", "ranker-v2", "ranker-v3"]),
        ("subs-mvp-crm-qa", 0.15, 0.0, ["control", "treatment"]),
        ("unregistered-banner-test", 0.05, 0.5, ["a", "b"]),
    ]
    names = [e[0] for e in exps]
    weights = [e[1] for e in exps]
    n_users = a.events // 4
    incident_at = int(a.events * 0.6)
    with open(a.out, "wb") as f:
        buf = []
        for i in range(a.events):
            exp, _, frac, variants = exps[rng.choices(range(len(exps)), weights)[0]]
            u = rng.randrange(n_users)
            uid = f"user-{u:08d}"
            ts = T0 + i * 20  # 50 events/s of event time: 1M events span ~5.6 h
            attrs = None
            if exp == "search-ranking-br-mobile":
                attrs = {"country": "BR" if u % 10 else "PT", "platform": "ios" if u % 3 else "android"}
            if exp == "subs-mvp-crm-qa":
                if i >= incident_at:
                    enrolled = True
                elif u % 5000 == 0:
                    uid, enrolled = f"qa-00{u % 3 + 1}", True
                else:
                    enrolled = False
            else:
                enrolled = (u * 2654435761 % 1000) < frac * 1000  # deterministic per user
            ev = {"experiment": exp, "user_id": uid, "enrolled": enrolled, "ts": ts}
            if enrolled:  # declared split, deterministic per user
                ev["variant"] = variants[min(len(variants) - 1, (u // 7) % 100 * len(variants) // 100)]
            if attrs:
                ev["attributes"] = attrs
            buf.append(enc.encode(ev))
            if len(buf) >= 10000:
                f.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            f.write(b"\n".join(buf) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
