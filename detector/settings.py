"""Settings from the environment (each documented in README.md with its default)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = field(default_factory=lambda: _env("DETECTOR_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    app_id: str = field(default_factory=lambda: _env("DETECTOR_APP_ID", "exposure-detector"))
    web_host: str = field(default_factory=lambda: _env("DETECTOR_WEB_HOST", "127.0.0.1"))
    web_port: int = field(default_factory=lambda: _int("DETECTOR_WEB_PORT", 6066))
    webhook_urls: tuple[str, ...] = field(
        default_factory=lambda: tuple(u.strip() for u in _env("DETECTOR_WEBHOOK_URLS", "").split(",") if u.strip())
    )
    api_token: str = field(default_factory=lambda: _env("DETECTOR_API_TOKEN", ""))
    expectations_dir: str = field(default_factory=lambda: _env("DETECTOR_EXPECTATIONS_DIR", "config/expectations"))
    alerting_config: str = field(default_factory=lambda: _env("DETECTOR_ALERTING_CONFIG", "config/alerting.yaml"))
    data_dir: str = field(default_factory=lambda: _env("DETECTOR_DATA_DIR", "data"))
    partitions: int = field(default_factory=lambda: _int("DETECTOR_PARTITIONS", 8))
    # earliest: a first deployment builds its state from the history Kafka still holds.
    offset_reset: str = field(default_factory=lambda: _env("DETECTOR_OFFSET_RESET", "earliest"))
    checkpoint_interval_s: float = field(default_factory=lambda: _float("DETECTOR_CHECKPOINT_INTERVAL", 1.0))
    max_batch_records: int = field(default_factory=lambda: _int("DETECTOR_MAX_BATCH", 20000))
    log_level: str = field(default_factory=lambda: _env("DETECTOR_LOG_LEVEL", "info"))
    # Kafka consumer-group session timeout (both groups): how long a crashed worker keeps its
    # partitions before the group hands them to a restarted or surviving worker. The broker
    # accepts 6..1800 s (group.min/max.session.timeout.ms).
    session_timeout_s: float = field(default_factory=lambda: _float("DETECTOR_SESSION_TIMEOUT", 30.0))

    # --- statistics (README "Statistics") ---
    # Expected false pages per month over the whole fleet, at most `active_experiments` experiments
    # active in a month: each experiment's lifetime alpha is their ratio (a registration's alpha overrides).
    false_page_budget: float = field(default_factory=lambda: _float("DETECTOR_FALSE_PAGE_BUDGET", 1.0))
    active_experiments: int = field(default_factory=lambda: _int("DETECTOR_ACTIVE_EXPERIMENTS", 10000))
    window_grace_s: float = field(default_factory=lambda: _float("DETECTOR_WINDOW_GRACE", 3600.0))
    segment_missing_breach: bool = field(
        default_factory=lambda: _env("DETECTOR_SEGMENT_MISSING_BREACH", "false").lower() in ("1", "true", "yes"))

    @functools.cached_property
    def engine_config(self):
        """The engine's knobs that come from the environment (detector.engine.EngineConfig)."""
        from detector.engine import EngineConfig
        from detector.engine.budget import fleet_alpha

        return EngineConfig(alpha=fleet_alpha(self.false_page_budget, self.active_experiments),
                            window_grace_ms=int(self.window_grace_s * 1000),
                            segment_missing_breach=self.segment_missing_breach)

    @property
    def heartbeat_interval_s(self) -> float:
        return min(3.0, self.session_timeout_s / 3)
    # Prepended to every topic name: several detectors (or test runs) can share one cluster.
    topic_prefix: str = field(default_factory=lambda: _env("DETECTOR_TOPIC_PREFIX", ""))

    @property
    def topics(self) -> "Topics":
        return Topics(self.topic_prefix, self.app_id)

    @property
    def faust_id(self) -> str:
        # The assignments consumer group is exactly app_id (our batch reader). Faust's own
        # group (tables, outbox agent) must differ: the two use different assignment protocols.
        return f"{self.app_id}-app"


@dataclass(frozen=True)
class Topics:
    """Names of the detector's topics (contract names, after an optional prefix)."""

    prefix: str = ""
    app_id: str = "exposure-detector"

    @property
    def assignments(self) -> str:
        return f"{self.prefix}exposure.assignments"

    @property
    def expectations(self) -> str:
        return f"{self.prefix}exposure.expectations"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}exposure.alerts"

    @property
    def timeline(self) -> str:
        return f"{self.prefix}exposure.timeline"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}exposure.deadletter"

    @property
    def state(self) -> str:
        """Compacted changelog of per-partition engine state, keyed by experiment."""
        return f"{self.prefix}{self.app_id}-state-changelog"
