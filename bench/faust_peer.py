"""The peer for bench/throughput.py: a stock Faust per-event agent doing the same counting.

Reads the pre-produced assignments topic with `async for value in stream` (one event at a
time, Faust's normal programming model), decodes the JSON and keeps, per experiment,
exact distinct users, distinct enrolled users and per-variant enrolled counts in memory
(no table writes: tables would make Faust ~3x slower still). Stops after
PEER_TARGET events and writes {"events", "seconds"} (first event to last) to PEER_OUT.

    PEER_TOPIC=... PEER_TARGET=150000 PEER_OUT=/tmp/x.json PEER_GROUP=g python bench/faust_peer.py worker
"""

from __future__ import annotations

import json
import os
import time

import faust

TOPIC = os.environ["PEER_TOPIC"]
TARGET = int(os.environ.get("PEER_TARGET", "150000"))
OUT = os.environ["PEER_OUT"]

app = faust.App(
    os.environ.get("PEER_GROUP", "faust-peer"),
    broker=f"kafka://{os.environ.get('DETECTOR_KAFKA_BOOTSTRAP', '127.0.0.1:9092')}",
    store="memory://",
    autodiscover=False,
    consumer_auto_offset_reset="earliest",
    topic_allow_declare=False,
    topic_disable_leader=True,
    web_enabled=False,
    datadir=os.environ.get("PEER_DATADIR", "/tmp/faust-peer"),
)
topic = app.topic(TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

seen: dict[str, set] = {}
enrolled: dict[str, dict] = {}
variants: dict[str, dict] = {}
progress = {"n": 0, "t0": 0.0}


@app.agent(topic)
async def count(stream):
    for_seen, for_enr = seen, enrolled
    async for value in stream:
        if progress["n"] == 0:
            progress["t0"] = time.perf_counter()
        ev = json.loads(value)
        exp, uid = ev["experiment"], ev["user_id"]
        s = for_seen.get(exp)
        if s is None:
            s = for_seen[exp] = set()
            for_enr[exp] = {}
            variants[exp] = {}
        s.add(uid)
        if ev.get("enrolled", True):
            e = for_enr[exp]
            if uid not in e:
                v = ev.get("variant")
                e[uid] = v
                vc = variants[exp]
                vc[v] = vc.get(v, 0) + 1
        progress["n"] += 1
        if progress["n"] >= TARGET:
            dt = time.perf_counter() - progress["t0"]
            with open(OUT, "w") as f:
                json.dump({"events": progress["n"], "seconds": dt}, f)
            os._exit(0)


if __name__ == "__main__":
    app.main()
