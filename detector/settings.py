"""The worker's settings: one typed object, the only reader of the environment.

`Settings()` reads every `DETECTOR_*` variable once, at start (`detector worker` builds it and
passes it down; nothing else in `detector/` reads the environment, apart from CLI argument
defaults). Each field is the variable's name without the prefix, lower-cased: `web_port` is
`DETECTOR_WEB_PORT`. Every variable is documented in README.md ("Configuration") with its default.

Secrets (fields typed `Secret`) can also come from a file: `DETECTOR_API_TOKEN_FILE=/run/secrets/t`
reads the token from that file (one trailing newline dropped); the variable itself wins when both
are set. Secrets never appear in `repr()` or logs.

Areas add their settings as one contiguous block headed by a comment naming the area.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from detector.kafka_security import KafkaConnection

ENV_PREFIX = "DETECTOR_"
FILE_SUFFIX = "_FILE"


class FromFile:
    """Marks a field whose value may come from the file named by `<VARIABLE>_FILE`."""


# A secret: never in repr(); may be given as `DETECTOR_<NAME>_FILE`.
Secret = Annotated[str, Field(repr=False), FromFile()]


def read_secret_file(path: str) -> str:
    """The content of a secret file, without the trailing newline editors and `echo` add."""
    text = Path(path).read_text(encoding="utf-8")
    return text[:-1] if text.endswith("\n") else text


def split_csv(value: Any) -> tuple[str, ...]:
    """`a, b,` -> ("a", "b"); a list or tuple is taken as it is."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(s.strip() for s in items if str(s).strip())


def env_default(name: str, default: str | None = None) -> str | None:
    """A CLI argument's default from the environment (`NAME`, else the file named by `NAME_FILE`).

    Only for command-line tools: the worker reads its settings through `Settings`."""
    value = os.environ.get(name)
    if value:
        return value
    path = os.environ.get(name + FILE_SUFFIX)
    return read_secret_file(path) if path else default


def worker_url_default() -> str:
    """Where the CLI finds the worker: `DETECTOR_URL`, else the local worker's `DETECTOR_WEB_PORT`."""
    return env_default("DETECTOR_URL") or f"http://127.0.0.1:{env_default('DETECTOR_WEB_PORT', '6066')}"


class _SecretFiles(PydanticBaseSettingsSource):
    """`DETECTOR_<NAME>_FILE` for every `Secret` field (lower priority than the variable)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if not any(isinstance(m, FromFile) for m in field.metadata):
            return None, field_name, False
        path = os.environ.get(f"{ENV_PREFIX}{field_name.upper()}{FILE_SUFFIX}")
        return (read_secret_file(path) if path else None), field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(field, name)
            if value is not None:
                out[name] = value
        return out


class Settings(BaseSettings):
    """Every setting of the worker (see the module docstring)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", enable_decoding=False, populate_by_name=True
    )

    kafka_bootstrap: str = "127.0.0.1:9092"
    app_id: str = "exposure-detector"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # Zero-config webhook sinks: every notification, as exposure-alert/v1 JSON.
    webhook_urls: tuple[str, ...] = ()
    # Standard Webhooks signing secret (whsec_<base64>) of the webhook sinks.
    webhook_secret: Secret = ""
    # A bearer token with every scope (detector/web/auth.py); empty: only DETECTOR_API_TOKENS_FILE's.
    api_token: Secret = ""
    # --- registration ---
    # YAML registrations synced to the topic at start (empty: none); prune: also delete the
    # registrations that are not in the directory (GitOps with the directory as the only source).
    expectations_dir: str = "config/expectations"
    expectations_prune: bool = False
    # --- end registration ---
    alerting_config: str = "config/alerting.yaml"
    data_dir: str = "data"
    partitions: int = 8
    # earliest: a first deployment builds its state from the history Kafka still holds.
    offset_reset: str = "earliest"
    checkpoint_interval_s: float = Field(1.0, validation_alias="DETECTOR_CHECKPOINT_INTERVAL")
    max_batch_records: int = Field(20000, validation_alias="DETECTOR_MAX_BATCH")
    # --- speed ---
    # Most bytes fetched from one partition per request (a request: 4x this). aiokafka refetches a
    # partition only once its buffer is empty, so larger fetches keep a catching-up worker fed;
    # a worker buffers up to this much per owned partition (README "Configuration").
    fetch_partition_bytes: int = Field(16 * 1024 * 1024, ge=1024 * 1024,
                                       validation_alias="DETECTOR_FETCH_PARTITION_BYTES")
    # --- end speed ---
    log_level: str = "info"
    # Kafka consumer-group session timeout (both groups): how long a crashed worker keeps its
    # partitions before the group hands them to a restarted or surviving worker. The broker
    # accepts 6..1800 s (group.min/max.session.timeout.ms).
    session_timeout_s: float = Field(30.0, validation_alias="DETECTOR_SESSION_TIMEOUT")
    # Prepended to every topic name: several detectors (or test runs) can share one cluster.
    topic_prefix: str = ""
    # --- dayone ---
    # `unregistered` experiments: page (one page each), digest (one digest per owner) or observe
    # (recorded, never notified); unset: `notifications.unregistered` in the alerting config
    # (default digest). The alerting config reads it from the environment like its timing overrides.
    unregistered: Literal["page", "digest", "observe"] | None = None
    # --- end dayone ---
    # --- production: Kafka security, fleet ---
    # Every Kafka client connects with `kafka` (below; detector/kafka_security.py turns it into each
    # library's arguments). The SASL password may come from DETECTOR_KAFKA_SASL_PASSWORD_FILE.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: Secret = ""
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    kafka_ssl_check_hostname: bool = True
    # The URL the other workers of the group reach this one at (they forward API calls to the
    # owner of an experiment); default http://<web_host or host name>:<web_port>.
    advertised_url: str = ""
    # Signs every worker-to-worker hop and advertised URL (detector/web/fleet_auth.py); the same on
    # every worker. Required as soon as a group has more than one worker (else: 503 naming it).
    fleet_secret: Secret = ""
    # Optional: the only addresses a member may advertise (comma-separated CIDRs and host:port).
    fleet_peers: str = ""
    # --- end production ---
    # --- console ---
    # Signs console sessions; empty: derived from the configured tokens (same on every worker).
    session_secret: Secret = ""
    # The worker's public base URL (links in notifications and pages; never taken from Host).
    external_url: str = ""
    # --- end console ---
    # --- statistics (README "Statistics") ---
    # Expected false pages per month over the whole fleet, with at most `active_experiments`
    # experiments active in a month: each experiment's lifetime alpha is their ratio (a
    # registration's own alpha overrides it).
    false_page_budget: float = Field(1.0, gt=0)
    active_experiments: int = Field(10000, gt=0)
    # outside_window: grace at both edges of a declared window (the accepted producer clock skew)
    window_grace_s: float = Field(3600.0, ge=0, validation_alias="DETECTOR_WINDOW_GRACE")
    # segment_breach: an enrolled event with no attributes is a breach (default: only counted)
    segment_missing_breach: bool = False
    # sample_ratio_mismatch: after a declared split change, users enrolled within this many
    # seconds (event time) are left out of the split test (the flag and the registration are
    # rarely changed at the same instant; README "Statistics", safe order of changes)
    split_change_grace_s: float = Field(3600.0, ge=0, validation_alias="DETECTOR_SPLIT_CHANGE_GRACE")
    # --- end statistics ---
    # --- sources ---
    # Which topics carry exposures, in which format: "topic=format[:option=value...],..." (README
    # "Connecting your experimentation platform"); empty = exposure.assignments=native.
    sources_spec: str = Field("", validation_alias="DETECTOR_SOURCES")
    # HTTP collector (POST /v1/assignments, /v1/sources/{format}): requests per second per token
    # (a token bucket holding `collector_burst` requests; 0: no limit), and records per request.
    collector_rate: float = 20.0
    collector_burst: int = 40
    collector_max_records: int = 10000
    # --- end sources ---
    # --- flags ---
    # Flag configurations compared with registrations (detector.flags): `kind=location,...`, kind
    # growthbook|flagd|unleash, location a URL, a file or directory, or `webhook`.
    flag_sources: str = ""
    flag_poll_interval_s: float = Field(15.0, gt=0, validation_alias="DETECTOR_FLAG_POLL_INTERVAL")
    flag_fetch_timeout_s: float = Field(10.0, gt=0, validation_alias="DETECTOR_FLAG_FETCH_TIMEOUT")
    unleash_api_token: Secret = ""  # sent as Unleash's Authorization header
    flagd_auth_token: Secret = ""  # bearer token for flagd URLs
    # --- end flags ---
    # --- security (detector/web/auth.py, detector/alerts/outbound.py) ---
    # Bearer tokens with scopes: a YAML/JSON file of {name, token | sha256, scopes} (see README).
    api_tokens_file: str = ""
    # What callers without a token may read: none | status (metrics, dashboards) | read (never user ids).
    anonymous_read: str = "status"
    # Hosts a registration's mitigation.kill_url may call: host names, *.suffix, IP addresses or CIDRs.
    kill_url_allowed_hosts: tuple[str, ...] = ()
    # --- end security ---

    # The environment as read at start, with every `<NAME>_FILE` resolved into `<NAME>`: the
    # alerting config names the variables that hold its sinks' URLs and secrets.
    _environ: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("sources_spec")
    @classmethod
    def _check_sources(cls, value: str) -> str:
        from detector.sources import parse_sources

        parse_sources(value)  # ValueError naming every problem, at start
        return value

    @field_validator("webhook_urls", "kill_url_allowed_hosts", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> tuple[str, ...]:
        return split_csv(value)

    @field_validator("anonymous_read", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _SecretFiles(settings_cls)

    def model_post_init(self, context: Any, /) -> None:
        env = dict(os.environ)
        for name, value in os.environ.items():
            if name.endswith(FILE_SUFFIX) and value and not env.get(name[: -len(FILE_SUFFIX)]):
                try:
                    env[name[: -len(FILE_SUFFIX)]] = read_secret_file(value)
                except OSError:
                    continue  # not every *_FILE variable is ours; a missing secret is reported by its user
        if self.webhook_secret:
            env[f"{ENV_PREFIX}WEBHOOK_SECRET"] = self.webhook_secret
        self._environ = env

    @property
    def environ(self) -> Mapping[str, str]:
        """The environment as read at start (secret files resolved), for config that names variables."""
        return self._environ

    @functools.cached_property
    def engine_config(self):
        """The engine's knobs that come from the environment (detector.engine.EngineConfig)."""
        from detector.engine import EngineConfig
        from detector.engine.budget import fleet_alpha

        return EngineConfig(alpha=fleet_alpha(self.false_page_budget, self.active_experiments),
                            window_grace_ms=int(self.window_grace_s * 1000),
                            split_change_grace_ms=int(self.split_change_grace_s * 1000),
                            segment_missing_breach=self.segment_missing_breach)

    @property
    def kafka(self) -> KafkaConnection:
        """How to reach the cluster (raises KafkaSecurityError naming the setting that is wrong)."""
        return KafkaConnection(
            bootstrap=self.kafka_bootstrap, protocol=self.kafka_security_protocol or "PLAINTEXT",
            mechanism=self.kafka_sasl_mechanism or None, username=self.kafka_sasl_username or None,
            password=self.kafka_sasl_password or None, cafile=self.kafka_ssl_cafile or None,
            certfile=self.kafka_ssl_certfile or None, keyfile=self.kafka_ssl_keyfile or None,
            check_hostname=self.kafka_ssl_check_hostname)

    @property
    def heartbeat_interval_s(self) -> float:
        return min(3.0, self.session_timeout_s / 3)

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix, self.app_id)

    @property
    def sources(self) -> list:
        """The configured sources (detector.sources.Source), topic prefix applied."""
        from detector.sources import parse_sources

        return parse_sources(self.sources_spec, self.topic_prefix)

    @property
    def faust_id(self) -> str:
        # The assignments consumer group is exactly app_id (our batch reader). Faust's own
        # group (tables, outbox agent) must differ: the two use different assignment protocols.
        return f"{self.app_id}-app"


def load_settings() -> Settings:
    """`Settings()`, with a bad variable reported by its name (`SettingsError`), secrets not echoed."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else ""
            field = Settings.model_fields.get(name)
            alias = field.validation_alias if field is not None else None
            var = alias if isinstance(alias, str) else f"{ENV_PREFIX}{name.upper()}"
            secret = field is not None and any(isinstance(m, FromFile) for m in field.metadata)
            shown = "" if secret else f"={err.get('input')!r}"
            problems.append(f"{var}{shown}: {err['msg']}")
        raise SettingsError("; ".join(problems)) from None


class SettingsError(ValueError):
    """A setting in the environment has a value the detector cannot use."""


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
        """The compacted registration topic (its name is a contract and keeps its history)."""
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
