"""Prometheus metrics of the detector, in one registry the worker owns.

`DetectorMetrics` is built once by the worker and handed to every stage (decode, engine
shell, delivery, HTTP). It never touches `prometheus_client.REGISTRY` (so tests can build
as many as they like) and never uses Faust's Prometheus sensor (its names fail
`promtool check metrics`).

Two kinds of metrics:

* **Detector health**: plain counters, gauges and histograms updated by the stages through
  the `record_*` helpers, which also keep free-form label values (dead-letter reasons, sink
  names, outcomes, sources) low-cardinality.
* **Per experiment**: a custom collector renders the last `observe()` snapshot of each
  experiment. `update_experiment` replaces the snapshot (so a rule or variant that
  disappears from the snapshot disappears from `/metrics`), `remove_experiment` drops
  every series of the experiment (registration deleted).

Labels are experiment, variant, rule, severity and owner only: never user ids.
Every metric is listed with its meaning in README.md ("Metrics").
"""

from __future__ import annotations

import contextlib
import platform
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from detector.engine import FIRING, Observation

try:  # prometheus_client >= 0.22 names the classic text format explicitly
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE
except ImportError:  # pragma: no cover
    from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE

PREFIX = "exposure_detector_"

# Batch processing is expected to take milliseconds; a 10 s batch means the worker is stuck.
BATCH_DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
BATCH_SIZE_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
# Webhook deliveries: a receiver's latency plus retries, up to the delivery timeout.
DELIVERY_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HTTP_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REGISTRATION_SOURCES = ("api", "cli", "yaml")

_LABEL_CHARS = re.compile(r"[^a-z0-9_.-]+")
OTHER = "other"


class _BoundedLabel:
    """Normalises a free-form label value and caps how many distinct values it may take.

    Values beyond the cap become "other", so a caller that passes an exception message
    or an URL by mistake cannot blow up the number of series.
    """

    def __init__(self, max_values: int = 20, max_length: int = 40, default: str = "unknown"):
        self.max_values = max_values
        self.max_length = max_length
        self.default = default
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: Any) -> str:
        text = _LABEL_CHARS.sub("_", str(value if value is not None else "").strip().lower())
        text = text.strip("_")[: self.max_length] or self.default
        with self._lock:
            if text in self._seen:
                return text
            if len(self._seen) >= self.max_values:
                return OTHER
            self._seen.add(text)
            return text


def _number(value: Any) -> float | None:
    """A finite float from an int/float (not bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value


def _label_value(value: Any, max_length: int = 128) -> str:
    return str(value)[:max_length] if value is not None else "none"


@dataclass
class _ExperimentSnapshot:
    """What `/metrics` shows of one experiment: the last observation, flattened."""

    enrolled_users: float | None = None
    eligible_users: float | None = None
    observed_fraction: float | None = None
    declared_fraction: float | None = None
    declared_max_users: float | None = None
    events: float | None = None
    first_event_seconds: float | None = None
    last_event_seconds: float | None = None
    severity: str = "warning"
    owner: str = ""
    variants: dict[str, float] = field(default_factory=dict)
    declared_variants: dict[str, float] = field(default_factory=dict)
    rule_state: dict[str, float] = field(default_factory=dict)
    rule_statistic: dict[str, float] = field(default_factory=dict)
    rule_threshold: dict[str, float] = field(default_factory=dict)
    open_incidents: float = 0.0


def snapshot_from_observation(observation: Observation | None, max_variants: int = 32) -> _ExperimentSnapshot:
    """Flatten the engine's `Observation` (None: nothing observed yet). Non-finite numbers are skipped."""
    snap = _ExperimentSnapshot()
    if observation is None:
        return snap
    observed, expected = observation.observed, observation.expected
    snap.enrolled_users = _number(observed.enrolled_users)
    snap.eligible_users = _number(observed.eligible_users)
    snap.observed_fraction = _number(observed.observed_fraction)
    snap.events = _number(observed.events)
    for ms, attr in ((observed.first_event_at, "first_event_seconds"), (observed.last_event_at, "last_event_seconds")):
        setattr(snap, attr, ms / 1000.0 if ms is not None else None)

    for i, (name, count) in enumerate(sorted(observed.variants.items())):
        # Variant names come from producers: beyond the cap, fold them into one series.
        label = _label_value(name) if i < max_variants else "__other__"
        snap.variants[label] = snap.variants.get(label, 0.0) + float(count)

    snap.declared_fraction = _number(expected.fraction)
    snap.declared_max_users = _number(expected.max_users)
    for name, weight in (expected.variants or {}).items():
        snap.declared_variants[_label_value(name)] = float(weight)
    if expected.severity:
        snap.severity = _label_value(expected.severity, 32)
    if expected.owner:
        snap.owner = _label_value(expected.owner, 64)

    for rule, info in observation.rules.items():
        rule = _label_value(rule, 64)
        snap.rule_state[rule] = 1.0 if info.state == FIRING else 0.0
        for value, target in ((info.statistic, snap.rule_statistic), (info.threshold, snap.rule_threshold)):
            value = _number(value)
            if value is not None:
                target[rule] = value
    return snap


class _ExperimentCollector(Collector):
    """Renders the per-experiment snapshots held by `DetectorMetrics`."""

    def __init__(self, owner: "DetectorMetrics"):
        self._owner = owner

    def describe(self):
        return list(self._families({}))

    def collect(self):
        return list(self._families(self._owner._snapshot_copy()))

    @staticmethod
    def _families(snaps: Mapping[str, _ExperimentSnapshot]):
        p = PREFIX + "experiment_"
        E = ["experiment"]

        def gauge(name, doc, labels=E):
            return GaugeMetricFamily(p + name, doc, labels=labels)

        tracked = GaugeMetricFamily(PREFIX + "experiments", "Experiments with series in /metrics.")
        tracked.add_metric([], float(len(snaps)))
        yield tracked

        info = gauge("info", "Always 1: registration metadata of the experiment (join on experiment).",
                     ["experiment", "severity", "owner"])
        enrolled = gauge("enrolled_users", "Distinct users enrolled (estimate).")
        eligible = gauge("eligible_users", "Distinct users evaluated for the experiment, enrolled or not (estimate).")
        fraction = gauge("observed_fraction", "Enrolled / eligible distinct users (0..1).")
        d_fraction = gauge("declared_fraction", "Declared population fraction of eligible traffic (0..1).")
        d_max = gauge("declared_max_users", "Declared maximum number of distinct enrolled users.")
        variants = gauge("variant_users", "Distinct users enrolled per variant (estimate).", ["experiment", "variant"])
        d_variants = gauge("declared_variant_weight", "Declared share of each variant (0..1).", ["experiment", "variant"])
        state = gauge("rule_state", "1 while the rule is firing (experiment in breach), else 0.", ["experiment", "rule"])
        statistic = gauge("rule_statistic", "Current test statistic of the rule.", ["experiment", "rule"])
        threshold = gauge("rule_threshold", "Threshold the rule statistic is compared with.", ["experiment", "rule"])
        incidents = gauge("open_incidents", "Incidents of the experiment not yet resolved.")
        events = CounterMetricFamily(p + "events", "Assignment events processed for the experiment.", labels=E)
        first = gauge("first_event_timestamp_seconds", "Event time of the first event seen (unix seconds).")
        last = gauge("last_event_timestamp_seconds", "Event time of the newest event seen (unix seconds).")

        for exp, s in sorted(snaps.items()):
            info.add_metric([exp, s.severity, s.owner], 1.0)
            for family, value in (
                (enrolled, s.enrolled_users), (eligible, s.eligible_users),
                (fraction, s.observed_fraction), (d_fraction, s.declared_fraction),
                (d_max, s.declared_max_users), (incidents, s.open_incidents),
                (events, s.events), (first, s.first_event_seconds), (last, s.last_event_seconds),
            ):
                if value is not None:
                    family.add_metric([exp], value)
            for family, values in ((variants, s.variants), (d_variants, s.declared_variants),
                                   (state, s.rule_state), (statistic, s.rule_statistic),
                                   (threshold, s.rule_threshold)):
                for key, value in sorted(values.items()):
                    family.add_metric([exp, key], value)

        yield from (info, enrolled, eligible, fraction, d_fraction, d_max, variants, d_variants,
                    state, statistic, threshold, incidents, events, first, last)


class DetectorMetrics:
    """Every metric of the detector, in a registry of its own.

    Build one per worker process and pass it around; `render()` and
    `make_aiohttp_handler()` serve it.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, version: str | None = None,
                 process_metrics: bool = True, max_experiments: int = 10_000,
                 max_variants: int = 32):
        self.registry = registry if registry is not None else CollectorRegistry()
        self.max_experiments = max_experiments
        self.max_variants = max_variants
        r, p = self.registry, PREFIX
        if process_metrics:
            from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

        # --- build -------------------------------------------------------------------------
        if version is None:
            from detector import __version__ as version
        self.build_info = Gauge(p + "build_info", "Always 1: version of the detector and of Python.",
                                ["version", "python"], registry=r)
        self.build_info.labels(version, platform.python_version()).set(1)

        # --- ingestion ---------------------------------------------------------------------
        self.events_consumed_total = Counter(
            p + "events_consumed_total", "Records read from the assignments topic.", registry=r)
        self.events_decoded_total = Counter(
            p + "events_decoded_total", "Records decoded into valid assignment events.", registry=r)
        self.dead_lettered_total = Counter(
            p + "dead_lettered_total", "Records sent to the dead-letter topic, by reason class.",
            ["reason"], registry=r)
        self.batch_duration_seconds = Histogram(
            p + "batch_duration_seconds", "Time to process one batch (decode, engine, state write).",
            buckets=BATCH_DURATION_BUCKETS, registry=r)
        self.batch_size_events = Histogram(
            p + "batch_size_events", "Records per processed batch.", buckets=BATCH_SIZE_BUCKETS, registry=r)
        self.consumer_lag = Gauge(
            p + "consumer_lag", "Records behind the end of the partition (high watermark - position).",
            ["topic", "partition"], registry=r)
        self.last_event_timestamp_seconds = Gauge(
            p + "last_event_timestamp_seconds", "Event time of the newest event processed (unix seconds).",
            registry=r)
        self.last_batch_timestamp_seconds = Gauge(
            p + "last_batch_timestamp_seconds", "Wall-clock time the last batch finished (unix seconds).",
            registry=r)

        # --- notifications ------------------------------------------------------------------
        self.notifications_total = Counter(
            p + "notifications_total", "Notification attempts by sink and outcome.", ["sink", "outcome"],
            registry=r)
        self.webhook_delivery_duration_seconds = Histogram(
            p + "webhook_delivery_duration_seconds", "Duration of one delivery attempt to a sink.",
            ["sink"], buckets=DELIVERY_DURATION_BUCKETS, registry=r)

        # --- registrations ------------------------------------------------------------------
        self.registrations_written_total = Counter(
            p + "registrations_written_total", "Registrations accepted and written, by source.",
            ["source"], registry=r)
        self.registrations_rejected_total = Counter(
            p + "registrations_rejected_total", "Registrations rejected, by source and reason class.",
            ["source", "reason"], registry=r)
        self.registrations_deleted_total = Counter(
            p + "registrations_deleted_total", "Registrations deleted, by source.", ["source"], registry=r)

        # --- HTTP ---------------------------------------------------------------------------
        self.http_requests_total = Counter(
            p + "http_requests_total", "HTTP requests by route template, method and status code.",
            ["route", "method", "status"], registry=r)
        self.http_request_duration_seconds = Histogram(
            p + "http_request_duration_seconds", "HTTP request duration by route template.",
            ["route", "method"], buckets=HTTP_DURATION_BUCKETS, registry=r)

        self.experiments_dropped_total = Counter(
            p + "experiments_dropped_total",
            "Experiment updates ignored because max_experiments series sets already exist.", registry=r)

        # Label normalisers (low cardinality by construction).
        self._reason = _BoundedLabel(max_values=30)
        self._sink = _BoundedLabel(max_values=20)
        self._outcome = _BoundedLabel(max_values=10)
        self._source = _BoundedLabel(max_values=len(REGISTRATION_SOURCES) + 2)
        self._rejection = _BoundedLabel(max_values=30)
        self._method = _BoundedLabel(max_values=10)
        self._topic = _BoundedLabel(max_values=20, max_length=249)

        self._lock = threading.Lock()
        self._last_event_seconds = 0.0
        self._experiments: dict[str, _ExperimentSnapshot] = {}
        self._open_incidents: dict[str, float] = {}
        self.registry.register(_ExperimentCollector(self))

    # --- ingestion ---------------------------------------------------------------------------
    def record_consumed(self, n: int = 1) -> None:
        self.events_consumed_total.inc(n)

    def record_decoded(self, n: int = 1) -> None:
        self.events_decoded_total.inc(n)

    def record_dead_letter(self, reason: str, n: int = 1) -> None:
        """`reason` is a class (e.g. invalid_json, missing_field), never the error message."""
        self.dead_lettered_total.labels(self._reason(reason)).inc(n)

    def record_batch(self, size: int, duration_seconds: float, *, finished_at: float | None = None,
                     last_event_ms: int | None = None) -> None:
        """One processed batch: its size, duration, wall-clock end and newest event time."""
        self.batch_size_events.observe(size)
        self.batch_duration_seconds.observe(duration_seconds)
        self.last_batch_timestamp_seconds.set(time.time() if finished_at is None else finished_at)
        if last_event_ms is not None:
            self.record_event_time(last_event_ms)

    @contextlib.contextmanager
    def time_batch(self, size: int) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record_batch(size, time.perf_counter() - start)

    def record_event_time(self, ts_ms: int | float) -> None:
        """Event time (epoch ms) of a processed event; the gauge keeps the newest."""
        seconds = float(ts_ms) / 1000.0
        with self._lock:
            if seconds <= self._last_event_seconds:
                return
            self._last_event_seconds = seconds
        self.last_event_timestamp_seconds.set(seconds)

    def set_consumer_lag(self, topic: str, partition: int, lag: int | float) -> None:
        self.consumer_lag.labels(self._topic(topic), str(int(partition))).set(max(0.0, float(lag)))

    def replace_consumer_lags(self, lags: Mapping[tuple[str, int], int | float]) -> None:
        """Set the lag of every assigned partition; partitions no longer assigned vanish."""
        wanted = {(self._topic(t), str(int(p))): float(v) for (t, p), v in lags.items()}
        for labels in self._label_sets(self.consumer_lag):
            if labels not in wanted:
                with contextlib.suppress(KeyError):
                    self.consumer_lag.remove(*labels)
        for (topic, partition), lag in wanted.items():
            self.consumer_lag.labels(topic, partition).set(max(0.0, lag))

    # --- notifications -------------------------------------------------------------------------
    def record_notification(self, sink: str, outcome: str, duration_seconds: float | None = None) -> None:
        """outcome: sent | failed | retried | dropped (free-form, capped). sink: webhook, slack..."""
        sink = self._sink(sink)
        self.notifications_total.labels(sink, self._outcome(outcome)).inc()
        if duration_seconds is not None:
            self.webhook_delivery_duration_seconds.labels(sink).observe(duration_seconds)

    @contextlib.contextmanager
    def time_delivery(self, sink: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.webhook_delivery_duration_seconds.labels(self._sink(sink)).observe(
                time.perf_counter() - start)

    # --- registrations -------------------------------------------------------------------------
    def record_registration(self, source: str, outcome: str = "written", reason: str | None = None) -> None:
        """source: api | cli | yaml. outcome: written | rejected | deleted (reason for rejected)."""
        source = self._source(source)
        if outcome == "written":
            self.registrations_written_total.labels(source).inc()
        elif outcome == "deleted":
            self.registrations_deleted_total.labels(source).inc()
        else:
            self.registrations_rejected_total.labels(source, self._rejection(reason or "invalid")).inc()

    # --- HTTP ----------------------------------------------------------------------------------
    def record_http(self, route: str, method: str, status: int, duration_seconds: float) -> None:
        """`route` must be the route TEMPLATE (/v1/expectations/{experiment}), never the raw path."""
        method = self._method(method).upper()
        self.http_requests_total.labels(route, method, str(int(status))).inc()
        self.http_request_duration_seconds.labels(route, method).observe(duration_seconds)

    def aiohttp_middleware(self) -> Callable:
        """An aiohttp middleware recording every request under its route template.

        Unmatched paths (404 from the router) are recorded as route="unmatched".
        """
        from aiohttp import web

        @web.middleware
        async def metrics_middleware(request, handler):
            start = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                self.record_http(route_template(request), request.method, status,
                                 time.perf_counter() - start)

        return metrics_middleware

    # --- per experiment ------------------------------------------------------------------------
    def update_experiment(self, experiment: str, observation: Observation | None) -> None:
        """Replace the experiment's series with the engine's `observe()` snapshot."""
        snap = snapshot_from_observation(observation, self.max_variants)
        with self._lock:
            if experiment not in self._experiments and len(self._experiments) >= self.max_experiments:
                self.experiments_dropped_total.inc()
                return
            snap.open_incidents = self._open_incidents.get(experiment, 0.0)
            self._open_incidents[experiment] = snap.open_incidents
            self._experiments[experiment] = snap

    def set_open_incidents(self, experiment: str, count: int) -> None:
        with self._lock:
            self._open_incidents[experiment] = float(count)
            if experiment in self._experiments:
                self._experiments[experiment].open_incidents = float(count)

    def remove_experiment(self, experiment: str) -> None:
        """Drop every series of the experiment (its registration was deleted)."""
        with self._lock:
            self._experiments.pop(experiment, None)
            self._open_incidents.pop(experiment, None)

    def experiments(self) -> list[str]:
        with self._lock:
            return sorted(self._experiments)

    def _snapshot_copy(self) -> dict[str, _ExperimentSnapshot]:
        with self._lock:
            return dict(self._experiments)

    # --- exposition ----------------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """The Prometheus text format (0.0.4) and its content type.

        (prometheus_client 0.26's CONTENT_TYPE_LATEST says version=1.0.0; the bytes are the
        same for our legacy-valid names, and 0.0.4 is what Prometheus 2.x and promtool expect.)
        """
        return generate_latest(self.registry), CONTENT_TYPE

    def make_aiohttp_handler(self):
        """An aiohttp handler for GET /metrics (content negotiation, gzip) on this registry."""
        from prometheus_client.aiohttp import make_aiohttp_handler

        return make_aiohttp_handler(self.registry)

    @staticmethod
    def _label_sets(metric) -> list[tuple[str, ...]]:
        with metric._lock:
            return list(metric._metrics)


def route_template(request) -> str:
    """The matched route's template ("/v1/experiments/{experiment}"), or "unmatched"."""
    try:
        resource = request.match_info.route.resource
    except AttributeError:
        resource = None
    if resource is None:
        return "unmatched"
    return getattr(resource, "canonical", None) or "unmatched"
