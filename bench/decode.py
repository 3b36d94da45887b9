"""Decode cost per event of every source format, next to native, in one run.

    .venv/bin/python bench/decode.py [--events 100000] [--chunk 2500] [--reps 5] [--breakdown]

The same logical assignments (1,000 experiments, 100,000 users, two variants, 10% not
enrolled) are written in each platform's shape, as its exporter would (a realistic event of each,
see tests/unit/sources/source_fixtures.py), then decoded in `--chunk`-record batches with the
format's `decode_batch`, exactly as the ingest path does per fetched partition. CPU time
(process_time): every chunk is decoded by each format in turn and keeps its fastest of `--reps`
(robust to load spikes on a shared machine); the ratio to native is what to compare across builds.
"x native per byte" divides each cost by its bytes per event first (msgspec's parse is paid per
byte, so a format whose events are 4x larger starts 4x behind). `--breakdown` adds, per format,
`:parse` (msgspec into the wire struct alone) and `:scan` (the same bytes into an empty struct).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from functools import partial

import msgspec

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detector.sources import decoder_for  # noqa: E402
from detector.worker import tune_gc  # noqa: E402


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts / 1000)) + f".{ts % 1000:03d}Z"


def native(e, u, v, ts, on):
    return {"experiment": e, "user_id": u, "variant": v if on else None, "enrolled": on, "ts": ts,
            "attributes": {"country": "US", "platform": "ios"}}


def segment(e, u, v, ts, on):
    return {"anonymousId": "5f4c9d2e-8a51-4d8e-9b1e-0c8f1b6a7e21", "userId": u, "type": "track",
            "event": "Experiment Viewed", "messageId": f"ajs-{u}-{ts}",
            "context": {"library": {"name": "analytics.js", "version": "next-1.64.0"}, "locale": "en-US",
                        "location": {"country": "US"}, "device": {"type": "ios"}, "os": {"name": "iOS"}},
            "properties": {"experiment_id": e, "experiment_name": e, "variation_id": "1", "variation_name": v},
            "originalTimestamp": _iso(ts), "sentAt": _iso(ts), "timestamp": _iso(ts), "receivedAt": _iso(ts)}


def posthog(e, u, v, ts, on):
    return {"uuid": f"018f3a1e-{ts}", "event": "$feature_flag_called", "distinct_id": u,
            "properties": {"$feature_flag": e, "$feature_flag_response": v if on else False, "$lib": "web",
                           "$lib_version": "1.130.0", "$geoip_country_code": "US", "$device_type": "Mobile",
                           "$session_id": "018f3a1e-6a5b-7c4d-8e9f-0a1b2c3d4e5f"},
            "timestamp": _iso(ts)}


def launchdarkly(e, u, v, ts, on):
    return {"kind": "feature", "creationDate": ts, "key": e, "version": 17,
            "contextKeys": {"user": u, "organization": "org-acme"}, "variation": 1 if v == "treatment" else 0,
            "value": v, "default": "control", "reason": {"kind": "FALLTHROUGH" if on else "OFF", "inExperiment": on}}


def statsig(e, u, v, ts, on):
    return {"eventName": "statsig::experiment_exposure", "user": {"userID": u, "country": "US"}, "time": ts,
            "metadata": {"config": e, "ruleID": "2Kc5Wd9mXbLz" if on else "layerAssignment", "groupName": v,
                         "reason": "Network"}}


def unleash(e, u, v, ts, on):
    return {"eventType": "getVariant", "eventId": "c41aa58c-d2cd-4d08-a6c9-b3e3a0b1d8c5",
            "context": {"userId": u, "appName": "web", "environment": "production", "properties": {"country": "US"}},
            "enabled": on, "featureName": e, "impressionData": True, "variant": v if on else "disabled"}


def amplitude(e, u, v, ts, on):
    return {"event_type": "$exposure", "user_id": u, "device_id": "C8F9E604-F01A-4BD9-95C6-8E5357DF265D",
            "time": ts, "event_properties": {"flag_key": e, "variant": v if on else "off"},
            "platform": "iOS", "country": "United States"}


def optimizely(e, u, v, ts, on):
    return {"type": "flag", "userId": u, "attributes": {"country": "US"}, "timestamp": ts,
            "decisionInfo": {"flagKey": e, "enabled": on, "variationKey": v if on else "off", "ruleKey": e + "_exp",
                             "reasons": [], "decisionEventDispatched": on, "variables": {}}}


def openfeature(e, u, v, ts, on):
    return {"event.name": "feature_flag.evaluation", "feature_flag.key": e, "feature_flag.result.variant": v,
            "feature_flag.result.reason": "TARGETING_MATCH" if on else "DEFAULT", "feature_flag.context.id": u,
            "feature_flag.provider.name": "flagd", "timestamp": _iso(ts)}


def _parse_all(parse, chunk: list, stamps: list) -> list:
    return list(map(parse, chunk))


class _Nothing(msgspec.Struct):
    """Decoding into it parses and validates the JSON and keeps nothing: the per-byte floor."""


SHAPES = [native, posthog, segment, launchdarkly, statsig, unleash, amplitude, optimizely, openfeature]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=2500)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--formats", default="", help="comma-separated subset (native is always measured)")
    ap.add_argument("--breakdown", action="store_true",
                    help="also measure, per format, msgspec's parse alone (into the fast path's wire struct) and "
                         "a scan of the same bytes into an empty struct (the per-byte floor)")
    args = ap.parse_args()
    rng = random.Random(7)
    now = int(time.time() * 1000)
    logical = [(f"exp-{rng.randrange(1000):04d}", f"u-{rng.randrange(100_000):06d}", rng.choice(["control", "treatment"]),
                now - rng.randrange(600_000), rng.random() >= 0.1) for _ in range(args.events)]
    tune_gc()  # as the worker does
    wanted = {"native", *filter(None, args.formats.split(","))} if args.formats else None
    data = {shape.__name__: [json.dumps(shape(*a)).encode() for a in logical] for shape in SHAPES
            if wanted is None or shape.__name__ in wanted}
    decoders = {name: decoder_for(name) for name in data}
    runs = {name: dec.decode_batch for name, dec in decoders.items()}
    if args.breakdown:
        scan = msgspec.json.Decoder(_Nothing).decode
        for name, dec in decoders.items():
            parse = getattr(dec, "_fast_decode", None) or getattr(dec, "_decode", None)
            if parse is not None:
                runs[f"{name}:parse"] = partial(_parse_all, parse)
            runs[f"{name}:scan"] = partial(_parse_all, scan)
    # Noise-resistant on a shared machine: each chunk is decoded by every format in turn, and each
    # (format, chunk) keeps its fastest of the reps; a format's cost is the sum over its chunks.
    n_chunks = (args.events + args.chunk - 1) // args.chunk
    best = {name: [float("inf")] * n_chunks for name in runs}
    for name, dec in decoders.items():  # every record of the benchmark decodes (no reject)
        assert not dec.decode_batch(data[name][:100], [now] * 100)[2]
    for _ in range(args.reps):
        for c in range(n_chunks):
            lo = c * args.chunk
            for name, run in runs.items():
                chunk = data[name.split(":")[0]][lo:lo + args.chunk]
                stamps = [now] * len(chunk)
                c0 = time.process_time()
                run(chunk, stamps)
                took = time.process_time() - c0
                if took < best[name][c]:
                    best[name][c] = took
    us = {name: sum(v) / args.events * 1e6 for name, v in best.items()}
    size = {name: sum(map(len, v)) / len(v) for name, v in data.items()}
    base, base_size = us["native"], size["native"]
    print(f"{args.events:,} events per format in batches of {args.chunk}; best of {args.reps}; CPU us/event")
    print(f"{'format':<18}{'us/event':>10}{'x native':>10}{'bytes/event':>13}{'x native per byte':>19}")
    for name, cost in us.items():
        n = size[name.split(":")[0]]
        print(f"{name:<18}{cost:>10.2f}{cost / base:>10.2f}{n:>13.0f}{cost / n / (base / base_size):>19.2f}")


if __name__ == "__main__":
    main()
