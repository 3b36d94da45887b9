"""AckedSends: nothing is settled until every record sent so far is acknowledged."""

import asyncio

import pytest

from detector.ingest.acked import AckedSends


class FlakyProducer:
    """Fails the first `fail` sends of each value, then acknowledges."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.attempts: dict[bytes, int] = {}
        self.acked: list[bytes] = []

    async def send(self, topic, value=None, key=None, **kwargs):
        n = self.attempts[value] = self.attempts.get(value, 0) + 1
        f = asyncio.get_running_loop().create_future()
        if n <= self.fail:
            f.set_exception(ConnectionError("broker away"))
        else:
            self.acked.append(value)
            f.set_result(None)
        return f


async def test_failed_records_are_sent_again_until_acknowledged():
    prod = FlakyProducer(fail=1)
    sends = AckedSends(prod)
    for v in (b"n1", b"n2"):
        await sends.send("exposure.alerts", value=v, key=b"k")
    await sends.settle()
    assert sorted(prod.acked) == [b"n1", b"n2"]
    assert prod.attempts == {b"n1": 2, b"n2": 2}


async def test_settle_raises_and_keeps_records_that_never_get_through():
    prod = FlakyProducer(fail=10)
    sends = AckedSends(prod)
    await sends.send("exposure.deadletter", value=b"bad", key=None, headers=[("kind", b"x")])
    with pytest.raises(RuntimeError, match="not acknowledged"):
        await sends.settle(attempts=2)
    prod.fail = 0  # the broker is back: the kept record goes out with the next settle
    await sends.settle()
    assert prod.acked == [b"bad"]
