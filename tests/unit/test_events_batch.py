"""`decode_batch` (the ingest fast path) gives exactly what `decode` gives, record by record."""

from __future__ import annotations

import random

from detector.events import FAST_CHUNK, FAST_SUB, Assignment, Rejected, decode, decode_batch

NOW = 1_750_000_000_000
GOOD = [
    b'{"experiment":"e1","user_id":"u1","variant":"a","enrolled":true,"ts":%d,"attributes":{"country":"US"}}' % NOW,
    b'{"user_id":"u2","experiment":"e1","variant":null,"enrolled":false,"ts":%d,"attributes":null}' % (NOW - 5),
    b'{ "experiment" : "e2", "user_id" : "\xc3\xa9t\xc3\xa9", "variant" : "b", "enrolled" : true, "ts" : %d, "attributes" : {"a":"1","b":"2"} }' % NOW,
]
ODD = [
    None,
    b"",
    b"{not json",
    b'{"experiment":"e","user_id":"u"}',  # optional fields absent: ts from the record
    b'{"experiment":"e","user_id":"u","variant":"a","enrolled":true,"ts":%d,"attributes":{}}' % NOW,
    b'{"experiment":"e","user_id":"u","variant":"a","enrolled":true,"ts":%d,"attributes":{"n":1,"x":null}}' % NOW,
    b'{"experiment":"e","user_id":"u","variant":"a","enrolled":true,"ts":%d.5,"attributes":null}' % NOW,
    b'{"experiment":"e","user_id":"u","variant":"a","enrolled":true,"ts":"2025-06-15T15:06:40Z","attributes":null}',
    b'{"experiment":"e","user_id":"u","variant":"a","enrolled":true,"ts":"2025-06-15T15:06:40","attributes":null}',
    b'{"experiment":"e","user_id":"u","user_id":"v","variant":"a","enrolled":true,"ts":%d,"attributes":null}' % NOW,
    b'{"experiment":"e","user_id":"u","variant":"a","enrolled":true,"ts":%d,"attributes":{"c":"1","c":"2"}}' % NOW,
    b'{"experiment":"e","user_id":"u\\u0000","variant":"a","enrolled":true,"ts":%d,"attributes":null}' % NOW,
    b'{"experiment":"e","user_id":"u\\"q","variant":"a","enrolled":true,"ts":%d,"attributes":null}' % NOW,
    b'{"experiment":"","user_id":"u","variant":"a","enrolled":true,"ts":%d,"attributes":null}' % NOW,
    b'{"experiment":"e","user_id":"' + b"x" * 300 + b'","variant":"a","enrolled":true,"ts":%d,"attributes":null}' % NOW,
    b'{"experiment":"e","user_id":"u","variant":"a","enrolled":true,"ts":1,"attributes":null}',
    b'{"experiment":"e","user_id":"u","variant":"a","enrolled":true,"ts":%d,"attributes":null}' % (NOW + 86_400_000),
    b'{"experiment":"e","user_id":"u","variant":"a","enrolled":true,"ts":99999999999999999999999,"attributes":null}',
    b'{"experiment":"e","user_id":"u","variant":"a","enrolled":true,"ts":%d,"attributes":null,"extra":"x"}' % NOW,
    b'{"experiment":"e","user_id":"u","variant":"ts","enrolled":true,"ts":%d,"attributes":null}' % NOW,
    b'{"experiment":"e","user_id":"u"},{"experiment":"f","user_id":"v"}',
    b'{"experiment":"e","user_id":"u","variant":"a","enrolled":true,"ts":%d,"attributes":{' % NOW,
    b'"x"}}',
    b'{"experiment":"e","user_id":"u","variant":"a","enrolled":"yes","ts":%d,"attributes":null}' % NOW,
    b" " * 70_000,
]


def _key(x):
    if isinstance(x, Rejected):
        return ("rejected", x.reason, x.value, x.kind)
    assert isinstance(x, Assignment)
    return ("event", x.experiment, x.user_id, x.variant, x.enrolled, x.ts, x.attributes)


def _check(values, stamps):
    want = [_key(decode(v, t)) for v, t in zip(values, stamps)]
    events, positions, rejects = decode_batch(list(values), list(stamps))
    got: list = [None] * len(values)
    pos = range(len(values)) if positions is None else positions
    assert len(pos) == len(events)
    for i, ev in zip(pos, events):
        got[i] = _key(ev)
    for i, rej in rejects:
        assert got[i] is None
        got[i] = _key(rej)
    assert got == want


def test_all_good_batch_takes_the_fast_path_and_matches_decode():
    values = GOOD * 50
    stamps = [NOW] * len(values)
    events, positions, rejects = decode_batch(values, stamps)
    assert positions is None and rejects == []
    _check(values, stamps)


def test_a_fetch_of_several_slices_takes_the_fast_path_and_matches_decode():
    values = GOOD * (FAST_SUB + 1)  # decoded FAST_SUB records at a time
    stamps = [NOW] * len(values)
    events, positions, rejects = decode_batch(values, stamps)
    assert len(values) > 3 * FAST_SUB and positions is None and rejects == [] and len(events) == len(values)
    _check(values, stamps)
    odd = values[:2 * FAST_SUB] + [ODD[-5]] + values[2 * FAST_SUB:]  # one bad record in the third slice
    _check(odd, [NOW] * len(odd))


def test_each_odd_record_alone_matches_decode():
    for v in ODD:
        _check([v], [NOW])
        _check(GOOD + [v] + GOOD, [NOW] * (len(GOOD) * 2 + 1))


def test_large_mixed_batches_match_decode():
    rng = random.Random(5)
    for _ in range(5):
        n = rng.randint(FAST_CHUNK, 3 * FAST_CHUNK)
        values = [rng.choice(ODD) if rng.random() < 0.01 else rng.choice(GOOD) for _ in range(n)]
        stamps = [rng.choice([NOW, 0, NOW + 10, -1]) for _ in range(n)]
        _check(values, stamps)


def test_a_custom_per_record_decoder_is_used_as_is():
    seen = []

    def mine(value, ts):
        seen.append(value)
        return Assignment("x", value.decode(), ts=ts)

    events, positions, rejects = decode_batch([b"a", b"b"], [1, 2], mine)
    assert [e.user_id for e in events] == ["a", "b"] and positions == [0, 1] and not rejects
    assert seen == [b"a", b"b"]
