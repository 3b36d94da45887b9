"""Deliver one notification to one sink over HTTP, retrying until delivered or hopeless.

The stages, in Alertmanager's order: build the sink's request once (the body and
`webhook-id` never change across retries), then per attempt add auth and a fresh
Standard Webhooks signature, send with a timeout, and classify the answer:

* `ok`    -> delivered;
* `fail`  -> rejected (4xx other than 408/429: retrying cannot help);
* `retry` -> network error, timeout, 429 or 5xx: wait an exponential backoff with
             jitter (0.5 s, x1.5, +-50 %, capped at 60 s, as Alertmanager does), or
             longer if the receiver's `Retry-After` asks, and try again;
* past the deadline (default 24 h) -> expired, for the dead-letter topic
  (or `failed` once `max_attempts`, if set, are used up).

Every call returns a `DeliveryOutcome` for metrics, logs and the incident timeline.
Clock, sleep and randomness are injectable so tests can run the schedule fast.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import aiohttp

from .http import BaseSink
from .notification import Notification
from .times import parse_duration_ms

log = logging.getLogger(__name__)

USER_AGENT = "exposure-detector-alerts/1"
OutcomeStatus = Literal["delivered", "rejected", "expired", "failed"]  # failed: max_attempts used up


@dataclass(frozen=True)
class RetryPolicy:
    timeout_s: float = 10.0
    initial_backoff_s: float = 0.5
    multiplier: float = 1.5
    jitter: float = 0.5  # +- fraction of each backoff
    max_backoff_s: float = 60.0
    deadline_s: float = 24 * 3600.0
    max_attempts: int | None = None  # None: until the deadline

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> "RetryPolicy":
        """From YAML: durations as strings ("10s", "24h") or seconds; `timeout`, `initial_backoff`, ..."""
        kwargs: dict[str, Any] = {}
        names = {f.name.removesuffix("_s"): f.name for f in fields(cls)}
        for key, value in (raw or {}).items():
            name = names.get(key.removesuffix("_s"))
            if name is None:
                raise ValueError(f"unknown delivery setting {key!r}")
            if name in ("multiplier", "jitter"):
                kwargs[name] = float(value)
            elif name == "max_attempts":
                kwargs[name] = None if value is None else int(value)
            else:
                kwargs[name] = parse_duration_ms(value) / 1000.0
        return cls(**kwargs)

    def backoffs(self, rng: Callable[[], float] = random.random) -> Iterator[float]:
        """Successive waits: initial * multiplier^k, jittered by +-jitter, capped."""
        base = self.initial_backoff_s
        while True:
            jittered = base * (1 + self.jitter * (2 * rng() - 1))
            yield max(0.0, min(jittered, self.max_backoff_s))
            base = min(base * self.multiplier, self.max_backoff_s)


@dataclass(frozen=True)
class DeliveryOutcome:
    sink: str
    notification_id: str
    incident_id: str
    status: OutcomeStatus
    attempts: int
    http_status: int | None
    duration_ms: float
    error: str | None = None
    finished_at: int = 0  # epoch ms

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"

    @property
    def dead_letter(self) -> bool:
        """True when the notification goes to the dead-letter topic (rejected or expired)."""
        return self.status != "delivered"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


async def deliver(
    notification: Notification,
    sink: BaseSink,
    session: aiohttp.ClientSession | None = None,
    policy: RetryPolicy | None = None,
    *,
    deadline_at: float | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Any] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
) -> DeliveryOutcome:
    """Send `notification` to `sink` until delivered, rejected or past the deadline.

    `deadline_at` (epoch seconds) lets a restarted worker keep the original
    deadline; by default it is now + `policy.deadline_s`.
    """
    policy = policy or RetryPolicy()
    if session is None:
        async with aiohttp.ClientSession() as own:
            return await deliver(notification, sink, own, policy, deadline_at=deadline_at, clock=clock, sleep=sleep, rng=rng)

    request = sink.build_request(notification)
    started = clock()
    deadline = deadline_at if deadline_at is not None else started + policy.deadline_s
    timeout = aiohttp.ClientTimeout(total=policy.timeout_s)
    waits = policy.backoffs(rng)
    attempts, http_status, error = 0, None, None

    def outcome(status: OutcomeStatus) -> DeliveryOutcome:
        end = clock()
        result = DeliveryOutcome(
            sink=sink.name, notification_id=notification.id, incident_id=notification.incident_id,
            status=status, attempts=attempts, http_status=http_status,
            duration_ms=round((end - started) * 1000, 3), error=error, finished_at=int(end * 1000),
        )
        level = logging.INFO if status == "delivered" else logging.ERROR
        log.log(level, "alert delivery %s: sink=%s id=%s attempts=%d http=%s error=%s",
                 status, sink.name, notification.id, attempts, http_status, error)
        return result

    while True:
        attempts += 1
        headers = {"User-Agent": USER_AGENT, **request.headers, "webhook-id": notification.id}
        if sink.bearer_token:
            headers["Authorization"] = f"Bearer {sink.bearer_token}"
        if sink.signer is not None:
            headers.update(sink.signer.headers(notification.id, request.body))
        retry_after = None
        try:
            async with session.request(request.method, request.url, data=request.body, headers=headers,
                                       timeout=timeout, allow_redirects=False) as resp:
                await resp.read()
                http_status, error = resp.status, None
                verdict = sink.classify(resp.status, resp.headers)
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), clock())
                if verdict != "ok":
                    error = f"HTTP {resp.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            verdict, http_status, error = "retry", None, f"{type(exc).__name__}: {exc}"[:300]

        if verdict == "ok":
            return outcome("delivered")
        if verdict == "fail":
            return outcome("rejected")
        if policy.max_attempts is not None and attempts >= policy.max_attempts:
            return outcome("failed")
        wait = next(waits)
        if retry_after is not None:
            wait = max(wait, retry_after)
        if clock() + wait > deadline:
            return outcome("expired")
        log.warning("alert delivery retry in %.2fs: sink=%s id=%s attempt=%d error=%s",
                    wait, sink.name, notification.id, attempts, error)
        await sleep(wait)


async def deliver_to_all(
    notification: Notification,
    sinks: Iterable[BaseSink],
    session: aiohttp.ClientSession,
    policy: RetryPolicy | None = None,
    **kwargs: Any,
) -> list[DeliveryOutcome]:
    """Deliver to several sinks concurrently; one slow sink never holds up another."""
    tasks = [deliver(notification, s, session, policy, **kwargs) for s in sinks]
    return list(await asyncio.gather(*tasks))
