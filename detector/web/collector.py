"""HTTP collector: exposures from apps that cannot produce to Kafka (browsers, mobile, serverless)
and from webhook destinations (Segment, RudderStack).

    POST /v1/assignments          native assignment events (README "Assignment events")
    POST /v1/sources/{format}     a platform's events (any format of detector.sources), including
                                  the body Segment's webhook destination POSTs

Body: a JSON array of events, NDJSON (one event per line), or one JSON object (a webhook call;
`{"batch": [...]}` as Segment's and RudderStack's batch bodies). At most 1 MiB and
`DETECTOR_COLLECTOR_MAX_RECORDS` records (413 beyond). Needs a bearer token with the `ingest`
scope (`DETECTOR_API_TOKEN` has every scope). Each record is decoded with its format's decoder
(the options of the first source of that format in `DETECTOR_SOURCES`, e.g. its identity) and
the assignments are written to `exposure.assignments`, keyed by experiment, with the producer's
acknowledgement (acks=all) before the answer:

    202 {"accepted": 2, "rejected": [{"index": 1, "kind": "invalid_field", "reason": "..."}],
         "not_exposure": [3]}

Nothing is dropped silently: every record is accepted, rejected (index, kind, reason), or
reported as not an exposure. 422 when records were sent and none is valid; 503 when Kafka did not
acknowledge (then nothing may be assumed written: send the request again; a repeated exposure
changes no user count). A token bucket per token bounds requests (`DETECTOR_COLLECTOR_RATE` per
second, bursts of `DETECTOR_COLLECTOR_BURST`): 429 with Retry-After beyond.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

import msgspec
from aiohttp import web

from detector.sources import SKIPPED_KINDS, Decoder, decoder_for
from detector.sources._common import NOT_EXPOSURE
from detector.web import auth
from detector.web.problems import HTTPProblem, json_response, read_body

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
HTTP_TOPIC = "http"  # the `topic` label of the collector's per-source metrics


class RateLimiter:
    """A token bucket per key: `rate` requests a second, at most `burst` at once."""

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self.rate, self.burst, self.max_keys = rate, max(1, burst), max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def retry_after(self, key: str, now: float) -> float:
        """0 when the request may go on (and is counted), else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._buckets.clear()  # many tokens at once: start over rather than grow without bound
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0


def split_records(body: bytes) -> list[bytes]:
    """The records of a body: JSON array, one JSON object ({"batch": [...]} expanded), or NDJSON."""
    head = body.lstrip()[:1]
    try:
        if head == b"[":
            return [bytes(r) for r in msgspec.json.decode(body, type=list[msgspec.Raw])]
        if head == b"{":
            try:
                obj = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
            except msgspec.DecodeError:
                obj = None  # several lines: NDJSON
            if obj is not None:
                batch = obj.get("batch")
                if batch is not None and set(obj) <= {"batch", "sentAt", "context", "writeKey", "integrations"}:
                    return [bytes(r) for r in msgspec.json.decode(batch, type=list[msgspec.Raw])]
                return [body.strip()]
    except msgspec.DecodeError as exc:
        raise HTTPProblem(400, f"invalid JSON body: {exc}") from None
    return [line.strip() for line in body.split(b"\n") if line.strip()]


class Collector:
    def __init__(self, settings, ingest, metrics=None) -> None:
        self.settings = settings
        self.ingest = ingest  # IngestService: its producer (acks=all) and its sources
        self.metrics = metrics
        self.limiter = RateLimiter(settings.collector_rate, settings.collector_burst)
        self._decoders: dict[str, Decoder] = {}

    def decoder(self, fmt: str) -> Decoder:
        dec = self._decoders.get(fmt)
        if dec is None:
            try:
                canonical = decoder_for(fmt).format
            except ValueError as exc:
                raise HTTPProblem(404, str(exc)) from None
            configured = next((s for s in self.ingest.sources.values() if s.format == canonical), None)
            dec = self._decoders[fmt] = decoder_for(canonical, configured.options if configured else None,
                                                    getattr(self.ingest, "context_kind_of", None))
        return dec

    async def handle(self, request: web.Request, fmt: str) -> web.Response:
        try:
            # The auth middleware let only tokens with the `ingest` scope through (the route's rule).
            wait = self.limiter.retry_after(auth.principal(request).name, time.monotonic())
            if wait > 0:
                problem = HTTPProblem(429, "rate limit exceeded for this token", retry_after_s=round(wait, 3))
                problem.headers["Retry-After"] = str(max(1, math.ceil(wait)))
                raise problem
            dec = self.decoder(fmt)
            if self.ingest.sources[self.settings.topics.assignments].format != "native":
                raise HTTPProblem(409, f"{self.settings.topics.assignments} does not carry native events here")
            records = split_records(await read_body(request, MAX_BODY_BYTES))
            if len(records) > self.settings.collector_max_records:
                raise HTTPProblem(413, f"{len(records)} records in one request; at most "
                                       f"{self.settings.collector_max_records}")
            return await self._write(dec, records)
        except HTTPProblem as problem:
            return problem.response()

    async def _write(self, dec: Decoder, records: list[bytes]) -> web.Response:
        now = int(time.time() * 1000)
        events, _, rejects = dec.decode_batch(records, [now] * len(records))
        if self.metrics is not None:
            self.metrics.record(HTTP_TOPIC, dec.format, len(records), len(events), rejects)
        rejected = [{"index": i, "kind": r.kind, "reason": r.reason} for i, r in rejects if r.kind not in SKIPPED_KINDS]
        skipped = [i for i, r in rejects if r.kind == NOT_EXPOSURE]
        no_identity = [i for i, r in rejects if r.kind in SKIPPED_KINDS and r.kind != NOT_EXPOSURE]
        producer = self.ingest.producer
        if events and producer is None:
            raise HTTPProblem(503, "the worker is starting: Kafka producer not ready", accepted=0)
        topic = self.settings.topics.assignments
        encode = msgspec.json.encode
        try:
            futures = [await producer.send(topic, key=ev.experiment.encode(), value=encode(ev)) for ev in events]
            await asyncio.gather(*futures)
        except Exception as exc:
            log.warning("collector: %d assignments not acknowledged by Kafka: %s", len(events), exc)
            raise HTTPProblem(503, "Kafka did not acknowledge the assignments: nothing may be assumed written; "
                                   "send the request again", accepted=0) from None
        body = {"accepted": len(events), "rejected": rejected, "not_exposure": skipped}
        if no_identity:
            body["no_identity"] = no_identity
        status = 422 if records and not events and rejected else 202
        return json_response(body, status=status)


def add_collector_routes(router: web.UrlDispatcher, *, settings, ingest, metrics=None) -> Collector:
    collector = Collector(settings, ingest, metrics)

    async def assignments(request: web.Request) -> web.Response:
        return await collector.handle(request, "native")

    async def sources(request: web.Request) -> web.Response:
        return await collector.handle(request, request.match_info["format"])

    auth.add_route(router, "POST", "/v1/assignments", assignments, access=auth.INGEST, max_body=MAX_BODY_BYTES)
    auth.add_route(router, "POST", "/v1/sources/{format}", sources, access=auth.INGEST, max_body=MAX_BODY_BYTES)
    return collector
