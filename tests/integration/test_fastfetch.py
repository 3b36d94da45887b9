"""The batch reader's raw fetch (detector.ingest.fastfetch) on the real broker.

A RAW consumer takes whole record batches at a time; it must hand out exactly the records, in
the order and with the positions, that aiokafka's own per-record loop gives: across
`max_records` bounds that split record batches, compressed batches, and the control batches
a transactional producer leaves in the log (skipped, as aiokafka skips them).
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from harness import BOOTSTRAP

from detector.ingest import fastfetch

N_PLAIN, N_GZIP, N_TXN = 3000, 1500, 40


async def _write(topic: str, txn_id: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    n = 0
    for kwargs in ({}, {"compression_type": "gzip"}):
        p = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5, **kwargs)
        await p.start()
        try:
            count = N_GZIP if kwargs else N_PLAIN
            futs = [await p.send(topic, key=b"k%d" % (n + i), value=b'{"i": %d}' % (n + i), partition=0,
                                 timestamp_ms=1_700_000_000_000 + n + i) for i in range(count)]
            await asyncio.gather(*futs)
            n += count
        finally:
            await p.stop()
    p = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=txn_id)
    await p.start()
    try:
        for chunk in range(2):  # each commit leaves a control batch (the marker) in the partition
            async with p.transaction():
                for i in range(N_TXN // 2):
                    await p.send(topic, key=b"k%d" % n, value=b'{"i": %d}' % n, partition=0,
                                 timestamp_ms=1_700_000_000_000 + n)
                    n += 1
    finally:
        await p.stop()
    return n


async def _read(topic: str, total: int, key_deserializer, max_records: int | None):
    c = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False, key_deserializer=key_deserializer,
                         max_partition_fetch_bytes=64 * 1024)  # several fetches, each of several record batches
    await c.start()
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        await c.seek_to_beginning(tp)
        got, sizes = [], []
        while len(got) < total:
            batch = await asyncio.wait_for(c.getmany(tp, timeout_ms=1000, max_records=max_records), 30)
            recs = batch.get(tp, [])
            if recs:  # and the position the worker would commit after this batch
                sizes.append((len(recs), await c.position(tp)))
            got.extend((r.offset, r.key, r.value, r.timestamp) for r in recs)
        position = await c.position(tp)
        extra = await c.getmany(tp, timeout_ms=300)
    finally:
        await c.stop()
    return got, sizes, position, extra


@pytest.mark.parametrize("max_records", [1, 7, 1000, None])
async def test_raw_fetch_hands_out_what_aiokafka_does(ns, max_records):
    assert fastfetch.install()
    topic = ns.topic("fastfetch")
    total = await _write(topic, f"{ns.app_id}-txn-{max_records}")
    expected, expected_sizes, end, _ = await _read(topic, total, None, max_records)
    got, sizes, position, extra = await _read(topic, total, fastfetch.RAW, max_records)
    assert got == expected
    assert sizes == expected_sizes  # same batches, same position after each
    assert [v for _, _, v, _ in got] == [b'{"i": %d}' % i for i in range(total)]
    assert position == end  # past the last control batch, exactly where aiokafka's own loop ends
    assert not extra  # nothing handed out twice
    if max_records is not None:
        assert max(n for n, _ in sizes) <= max_records
