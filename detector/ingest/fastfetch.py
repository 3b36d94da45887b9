"""Raw fetched records for the batch reader: skip aiokafka's per-record Python work.

aiokafka parses record batches in C, then, per record, resumes a Python generator
(`PartitionRecords._unpack_records`), builds one Python `ConsumerRecord` dataclass (11 fields,
a headers tuple, two len() calls) and appends it in `FetchResult.getall`'s Python loop: ~1.8 us
of CPU a record, ~15% of the worker's. The batch reader only needs `offset`, `timestamp`, `key`
and `value`, which the C record objects already have. `RAW` is passed as the consumer's
`key_deserializer`: `getmany` of that consumer hands out the C records themselves, taken a whole
record batch at a time (`list(batch)`, a C loop), with the same positions, `max_records` bound,
CRC check and control-batch skipping as aiokafka's own loop. Every other consumer in the
process (Faust's) is untouched, and so is a RAW consumer reading `read_committed` (aborted
transactions need aiokafka's per-batch bookkeeping): those take aiokafka's path.

This hooks private methods (`PartitionRecords._consumer_record`, `FetchResult.getall`,
aiokafka 0.8 - 0.14). `install()` checks that they exist and returns False otherwise; the
service then reads with ordinary ConsumerRecords (same attributes, slower). A RAW consumer is
read with `getmany` only (`getone` would see the records `getmany` already took).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def RAW(key):  # noqa: N802 - a marker that is also a valid (identity) deserializer
    return key


_installed: bool | None = None


def install() -> bool:
    global _installed
    if _installed is not None:
        return _installed
    try:
        from aiokafka import errors
        from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult, PartitionRecords

        original = PartitionRecords._consumer_record
        original_getall = FetchResult.getall
        init_names = PartitionRecords.__init__.__code__.co_names
        if (not callable(original) or not callable(original_getall)
                or not {"_key_deserializer", "_records", "_check_crcs", "_isolation_level"} <= set(init_names)
                or not all(callable(getattr(FetchResult, m, None))
                           for m in ("check_assignment", "has_more", "_update_position"))):
            raise AttributeError("unexpected aiokafka PartitionRecords / FetchResult layout")
    except (ImportError, AttributeError) as exc:
        log.warning("raw record fetch not available (%s); using ConsumerRecord", exc)
        _installed = False
        return False

    def _consumer_record(self, tp, record):
        if self._key_deserializer is RAW:
            return record
        return original(self, tp, record)

    def getall(self, max_records=None):
        pr = self._partition_records
        if pr is None or pr._key_deserializer is not RAW or pr._isolation_level == READ_COMMITTED:
            return original_getall(self, max_records)
        if not self.check_assignment(self._topic_partition) or not self.has_more():
            return []
        out = _take(pr, max_records, errors.CorruptRecordException)
        self._update_position()
        if not _pending(pr) and not pr._records.has_next():
            self._partition_records = None
        return out

    PartitionRecords._consumer_record = _consumer_record
    FetchResult.getall = getall
    _installed = True
    return True


def _pending(pr) -> bool:
    rest = getattr(pr, "_raw_rest", None)
    return bool(rest)


def _take(pr, max_records: int | None, corrupt: type[Exception]) -> list:
    """Up to `max_records` C records of a RAW consumer's partition, whole record batches at a time.

    Keeps `pr.next_fetch_offset` exactly as aiokafka's `_unpack_records` would: the offset after
    the last record handed out, or the batch's next offset once a batch is used up.
    """
    out: list = []
    room = max_records if max_records is not None else -1
    rest = getattr(pr, "_raw_rest", None)  # records of a batch left over by the last call
    if rest:
        batch_next = pr._raw_next
        if 0 <= room < len(rest):
            out = rest[:room]
            pr._raw_rest = rest[room:]
            pr.next_fetch_offset = out[-1].offset + 1
            return out
        out = rest
        pr._raw_rest = None
        pr.next_fetch_offset = batch_next
        room = room - len(rest) if room >= 0 else -1
    records = pr._records
    while room != 0 and records.has_next():
        batch = records.next_batch()
        if pr._check_crcs and not batch.validate_crc():
            raise corrupt(f"Invalid CRC - {pr._tp}")
        if batch.is_control_batch:
            pr.next_fetch_offset = batch.next_offset
            continue
        recs = list(batch)
        if recs and recs[0].offset < pr.next_fetch_offset:  # a compressed message set resent from its start
            nfo = pr.next_fetch_offset
            recs = [r for r in recs if r.offset >= nfo]
        if 0 <= room < len(recs):
            out += recs[:room]
            pr._raw_rest = recs[room:]
            pr._raw_next = batch.next_offset
            pr.next_fetch_offset = recs[room - 1].offset + 1
            return out
        out += recs
        pr.next_fetch_offset = batch.next_offset
        if room > 0:
            room -= len(recs)
    return out
