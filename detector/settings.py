"""Settings from the environment (each documented in README.md with its default)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _secret(name: str) -> str:
    """A secret from NAME, else from the file named by NAME_FILE (a mounted secret)."""
    value = os.environ.get(name, "")
    path = os.environ.get(f"{name}_FILE", "")
    if not value and path:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    return value


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

    @property
    def heartbeat_interval_s(self) -> float:
        return min(3.0, self.session_timeout_s / 3)
    # Prepended to every topic name: several detectors (or test runs) can share one cluster.
    topic_prefix: str = field(default_factory=lambda: _env("DETECTOR_TOPIC_PREFIX", ""))

    # --- flags (detector.flags: flag configurations compared with registrations) ---
    # `kind=location,...`: kind growthbook|flagd|unleash, location a URL, a file or directory, or `webhook`.
    flag_sources: str = field(default_factory=lambda: _env("DETECTOR_FLAG_SOURCES", ""))
    flag_poll_interval_s: float = field(default_factory=lambda: _float("DETECTOR_FLAG_POLL_INTERVAL", 15.0))
    flag_fetch_timeout_s: float = field(default_factory=lambda: _float("DETECTOR_FLAG_FETCH_TIMEOUT", 10.0))
    unleash_api_token: str = field(default_factory=lambda: _secret("DETECTOR_UNLEASH_API_TOKEN"), repr=False)
    flagd_auth_token: str = field(default_factory=lambda: _secret("DETECTOR_FLAGD_AUTH_TOKEN"), repr=False)

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
