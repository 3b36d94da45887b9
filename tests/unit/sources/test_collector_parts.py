"""The HTTP collector's pure parts: how a body splits into records, and the per-token rate limit.

The collector itself (auth, acks, rejects by index) runs against the real broker and worker in
tests/e2e/test_sources_e2e.py.
"""

from __future__ import annotations

import pytest

from detector.web.collector import RateLimiter, split_records
from detector.web.problems import HTTPProblem


def test_bodies_split_into_records():
    assert split_records(b'[{"a": 1}, {"b": [1, 2]}]') == [b'{"a": 1}', b'{"b": [1, 2]}']
    assert split_records(b'{"a": 1}\n\n{"b": 2}\n') == [b'{"a": 1}', b'{"b": 2}']
    # One (pretty-printed) object: a Segment webhook call.
    assert split_records(b'{\n  "type": "track",\n  "event": "Experiment Viewed"\n}') == [
        b'{\n  "type": "track",\n  "event": "Experiment Viewed"\n}']
    # Segment / RudderStack batch bodies.
    assert split_records(b'{"batch": [{"a": 1}, {"b": 2}], "sentAt": "2024-05-01T12:00:00Z"}') == [
        b'{"a": 1}', b'{"b": 2}']
    # A bad NDJSON line stays a record (rejected by index later), never fails the body.
    assert split_records(b'{"a": 1}\nnot json') == [b'{"a": 1}', b"not json"]
    with pytest.raises(HTTPProblem) as e:
        split_records(b'[{"a": 1}, ')
    assert e.value.status == 400


def test_rate_limit_is_a_token_bucket_per_key():
    rl = RateLimiter(rate=2.0, burst=3)
    assert [rl.retry_after("a", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.retry_after("a", 100.0)
    assert wait == pytest.approx(0.5)
    assert rl.retry_after("b", 100.0) == 0.0  # another token has its own bucket
    assert rl.retry_after("a", 100.5) == 0.0  # refilled at 2 per second
    assert RateLimiter(rate=0, burst=1).retry_after("a", 0.0) == 0.0  # 0: no limit
