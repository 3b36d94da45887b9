"""Raw fetched records for the batch reader: skip aiokafka's per-record ConsumerRecord.

aiokafka parses record batches in C, then builds one Python `ConsumerRecord` dataclass (11
fields, a headers tuple, two len() calls) per record: ~8% of the worker's CPU at 40k events/s.
The batch reader only needs `offset`, `timestamp`, `key` and `value`, which the C record
objects already have. `RAW` is passed as the consumer's `key_deserializer`: records of that
consumer come out of `getmany` as the C records themselves; every other consumer in the
process (Faust's) is untouched.

This hooks one private method (`PartitionRecords._consumer_record`, aiokafka 0.8 - 0.14).
`install()` checks that it exists and returns False otherwise; the service then reads with
ordinary ConsumerRecords (same attributes, slower).
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
        from aiokafka.consumer.fetcher import PartitionRecords

        original = PartitionRecords._consumer_record
        if not callable(original) or "_key_deserializer" not in PartitionRecords.__init__.__code__.co_names:
            raise AttributeError("unexpected aiokafka PartitionRecords layout")
    except (ImportError, AttributeError) as exc:
        log.warning("raw record fetch not available (%s); using ConsumerRecord", exc)
        _installed = False
        return False

    def _consumer_record(self, tp, record):
        if self._key_deserializer is RAW:
            return record
        return original(self, tp, record)

    PartitionRecords._consumer_record = _consumer_record
    _installed = True
    return True
