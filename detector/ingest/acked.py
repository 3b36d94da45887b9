"""Records that must be acknowledged before the state that produced them is checkpointed.

aiokafka's `producer.flush()` waits for pending batches but never reports a failed one, and a
send's future is the only place a failure shows. Notifications, incident snapshots and dead
letters go through `AckedSends`; a checkpoint first `settle()`s it: failed records are sent
again (same keys and values, so receivers and the delivery log see the same ids), and only when
every one is acknowledged may state and offsets that cover them be written.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


class AckedSends:
    def __init__(self, producer=None) -> None:
        self.producer = producer
        self._pending: list[tuple[dict, asyncio.Future]] = []

    async def send(self, topic: str, value: bytes | None, key: bytes | None = None, **kwargs) -> None:
        record = dict(topic=topic, value=value, key=key, **kwargs)
        self._pending.append((record, await self.producer.send(**record)))

    async def send_many(self, topic: str, partition: int, records: list[tuple[bytes, bytes, int | None]]) -> None:
        """(key, value, timestamp ms) records to one partition, in record batches (one future a batch).

        ~20x cheaper than a `send` per record for the forwarding of whole fetches; a failed batch
        is sent again record by record by `settle`.
        """
        producer, i = self.producer, 0
        while i < len(records):
            batch, j = producer.create_batch(), i
            while j < len(records):
                key, value, ts = records[j]
                if batch.append(key=key, value=value, timestamp=ts) is None:
                    break
                j += 1
            if j == i:  # one record larger than a batch: the ordinary path
                key, value, ts = records[i]
                await self.send(topic, value=value, key=key, partition=partition, timestamp_ms=ts)
                i += 1
                continue
            future = await producer.send_batch(batch, topic, partition=partition)
            self._pending.append(({"topic": topic, "partition": partition, "batch": records[i:j]}, future))
            i = j

    async def settle(self, attempts: int = 3) -> None:
        """Wait until every record sent so far is acknowledged, sending failures again.

        Raises (keeping the unacknowledged records for the next call) if some still fail.
        """
        pending, self._pending = self._pending, []
        for attempt in range(attempts):
            if not pending:
                return
            results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
            failed = [rec for (rec, _), res in zip(pending, results) if isinstance(res, BaseException)]
            pending = []
            if failed:
                log.warning("%d records not acknowledged (attempt %d): sending again", len(failed), attempt + 1)
            for rec in _singles(failed):
                try:
                    pending.append((rec, await self.producer.send(**rec)))
                except Exception as exc:
                    pending.append((rec, _failed_future(exc)))
        if pending:
            self._pending[:0] = pending
            raise RuntimeError(f"{len(pending)} records still not acknowledged")


def _singles(records: list[dict]) -> list[dict]:
    """Records to send again one by one (a failed batch of `send_many` becomes its records)."""
    out: list[dict] = []
    for rec in records:
        if "batch" in rec:
            out.extend(dict(topic=rec["topic"], partition=rec["partition"], key=k, value=v, timestamp_ms=ts)
                       for k, v, ts in rec["batch"])
        else:
            out.append(rec)
    return out


def _failed_future(exc: Exception) -> asyncio.Future:
    f = asyncio.get_running_loop().create_future()
    f.set_exception(exc)
    return f
