"""AckedSends.send_many on the real broker: record batches to one partition, in order, acknowledged.

The ingest path forwards decoded source records to exposure.assignments this way (one future per
record batch instead of one `send` per record).
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from harness import BOOTSTRAP

from detector.ingest.acked import AckedSends


async def test_send_many_writes_every_record_in_order(ns):
    topic = ns.topic("acked.batches")
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 4, 1)])
    finally:
        await admin.close()
    records = [(f"exp-{i % 7}".encode(), b'{"n": %d, "pad": "%s"}' % (i, b"x" * 300), 1_700_000_000_000 + i)
               for i in range(5000)]  # ~1.6 MB: several record batches
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sends = AckedSends(producer)
        await sends.send_many(topic, 2, records)
        await sends.settle()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 2)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        got = []
        while len(got) < len(records):
            batch = await asyncio.wait_for(consumer.getmany(tp, timeout_ms=1000), 30)
            got.extend(batch.get(tp, []))
        end = (await consumer.end_offsets([TopicPartition(topic, p) for p in range(4)]))
    finally:
        await consumer.stop()
    assert [(r.key, r.value, r.timestamp) for r in got] == records
    assert {tp.partition: n for tp, n in end.items()} == {0: 0, 1: 0, 2: len(records), 3: 0}
