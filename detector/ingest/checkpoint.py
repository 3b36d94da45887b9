"""Checkpoint records of the state changelog topic.

Partition p of the assignments topic is checkpointed into partition p of the
state topic, one compacted record per experiment (key = experiment) plus one
for the partition's alert lifecycle. Each record carries the input offset it
covers, so a restore after a crash can skip exactly the events already applied.
"""

from __future__ import annotations

import msgspec

LIFECYCLE_KEY = b"\x00lifecycle"


class Checkpoint(msgspec.Struct, array_like=True):
    offset: int  # last input offset applied to this state (-1: none)
    blob: bytes  # ExperimentState.to_bytes() or the lifecycle's bytes


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(Checkpoint)


def encode(offset: int, blob: bytes) -> bytes:
    return _enc.encode(Checkpoint(offset, blob))


def decode(value: bytes) -> Checkpoint:
    return _dec.decode(value)
