"""Checkpoints in flight (detector.ingest.service): commits in order, never past a failed checkpoint.

The periodic checkpoint writes its records and lets their acks and the offset commit run in the
background, with up to MAX_IN_FLIGHT in flight. These tests drive `IngestService.checkpoint`
with a producer whose acks the test settles by hand, to pin down the ordering rules that make
restarts safe (the crash tests in tests/reliability run them on the real broker).
"""

from __future__ import annotations

import asyncio


from detector.ingest.service import MAX_IN_FLIGHT, IngestService
from detector.settings import Settings


class _Producer:
    def __init__(self) -> None:
        self.acks: list[asyncio.Future] = []

    async def send(self, topic, key=None, value=None, partition=None, **kw):
        f = asyncio.get_running_loop().create_future()
        self.acks.append(f)
        return f


class _Consumer:
    def __init__(self) -> None:
        self.commits: list[dict] = []
        self.pos = {0: 10, 1: 20}

    async def position(self, tp):
        return self.pos[tp.partition]

    async def commit(self, positions):
        self.commits.append({tp.partition: om.offset for tp, om in positions.items()})

    def assignment(self):
        return set()


class _Alerts:
    lock = None

    def checkpoint_blob(self, p):
        return None

    def rewrite_partition(self, p):
        pass


class _Det:
    def __init__(self) -> None:
        self.dirty = {"e"}
        self.remarked: list[str] = []

    def take_dirty_checkpoints(self):
        out = [(k.encode(), b"state") for k in sorted(self.dirty)]
        self.dirty = set()
        return out

    def mark_dirty(self, exps):
        self.remarked.extend(exps)


def _service():
    svc = IngestService(Settings(), registration_of=lambda e: None, alerts=_Alerts())
    svc.producer = _Producer()
    svc.sends.producer = svc.producer
    svc.consumer = _Consumer()
    svc.partitions = {0: _Det(), 1: _Det()}
    return svc


async def _settle(n: int = 5):
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_later_checkpoint_commits_only_after_the_earlier_one():
    assert MAX_IN_FLIGHT >= 2
    svc = _service()
    await svc.checkpoint([0], wait=False)
    svc.consumer.pos[1] = 25
    await svc.checkpoint([1], wait=False)  # written while the first is still unacknowledged
    first, second = svc.producer.acks
    second.set_result(None)
    await _settle()
    assert svc.consumer.commits == []  # its own acks are in, the earlier checkpoint's are not
    first.set_result(None)
    await _settle()
    assert svc.consumer.commits == [{0: 10}, {1: 25}]


async def test_after_a_failed_checkpoint_the_next_one_in_flight_commits_nothing():
    svc = _service()
    await svc.checkpoint([0], wait=False)
    svc.partitions[1].dirty = {"f"}
    await svc.checkpoint([1], wait=False)
    first, second = svc.producer.acks
    second.set_result(None)
    first.set_exception(RuntimeError("broker away"))
    await _settle()
    assert svc.consumer.commits == []
    # both checkpoints' experiments are written again with the next one
    assert svc.partitions[0].remarked == ["e"] and svc.partitions[1].remarked == ["f"]
    svc.partitions[0].dirty, svc.partitions[1].dirty = {"e"}, {"f"}
    task = asyncio.ensure_future(svc.checkpoint(wait=True))
    await _settle()
    for f in svc.producer.acks[2:]:
        f.set_result(None)
    await task
    assert svc.consumer.commits == [{0: 10, 1: 20}]


async def test_never_more_than_max_in_flight():
    svc = _service()
    for k in range(MAX_IN_FLIGHT):
        svc.partitions[0].dirty = {f"e{k}"}
        await svc.checkpoint([0], wait=False)
    svc.partitions[0].dirty = {"late"}
    blocked = asyncio.ensure_future(svc.checkpoint([0], wait=False))
    await _settle()
    assert not blocked.done() and len(svc.producer.acks) == MAX_IN_FLIGHT  # waits for the oldest first
    svc.producer.acks[0].set_result(None)
    await _settle(10)
    assert blocked.done() and len(svc.producer.acks) == MAX_IN_FLIGHT + 1
