"""Per-source metrics: records read, decoded, rejected by reason, not exposures, lag.

Labels are the source topic and its format (and, for rejections, the low-cardinality kind of
`Rejected`): never a user id. Registered in the worker's own registry (DetectorMetrics.registry).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from detector.events import Rejected

from ._common import NOT_EXPOSURE

PREFIX = "exposure_detector_source_"


class SourceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        labels = ["topic", "format"]
        self.read = Counter(PREFIX + "records_read", "Records read from a source topic (or posted to the collector, "
                            "topic=http).", labels, registry=r)
        self.decoded = Counter(PREFIX + "records_decoded", "Records decoded into assignments.", labels, registry=r)
        self.rejected = Counter(PREFIX + "records_rejected", "Records not decoded, by reason (kind); every reason "
                                "but no_identity is dead-lettered.", [*labels, "reason"], registry=r)
        self.not_exposure = Counter(PREFIX + "records_not_exposure", "Valid events of the platform that are not "
                                    "exposures (counted, skipped).", labels, registry=r)
        self.lag = Gauge(PREFIX + "lag", "Records behind the end of the source topic, summed over the partitions "
                         "this worker owns.", labels, registry=r)

    def record(self, topic: str, format: str, read: int, decoded: int,
               rejects: Iterable[tuple[int, Rejected]]) -> None:
        self.read.labels(topic, format).inc(read)
        self.decoded.labels(topic, format).inc(decoded)
        for _, rej in rejects:
            if rej.kind == NOT_EXPOSURE:
                self.not_exposure.labels(topic, format).inc()
            else:
                self.rejected.labels(topic, format, rej.kind).inc()

    def set_lags(self, lags: Mapping[tuple[str, int], int | float], formats: Mapping[str, str]) -> None:
        """Per-partition lags ((topic, partition) -> records) summed per source topic."""
        total = {t: 0.0 for t in formats}
        for (topic, _), lag in lags.items():
            if topic in total:
                total[topic] += max(0.0, float(lag))
        for topic, lag in total.items():
            self.lag.labels(topic, formats[topic]).set(lag)
