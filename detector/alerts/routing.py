"""Which sinks hear about which notification: `config/alerting.yaml` plus the environment.

The file names sinks (type, `url` or `url_env`, `secret_env`, `token_env`, type
options) and routes that match notifications by severity, owner, experiment or
rule (exact values or shell-style globs) to sinks. Routes are tried in order; the
first match wins unless it says `continue: true` (Alertmanager's rule). With no
routes, every sink hears everything.

Secrets never live in the file: a key like `secret` or `token` is an error. A
sink whose URL comes from an unset environment variable is skipped with a
warning, so the example file is safe to ship. `DETECTOR_WEBHOOK_URLS`
(comma-separated) adds generic `exposure-alert/v1` webhook sinks that hear
every notification: the zero-config path.

Timing settings from the environment override the file (deployment-specific
knobs, in seconds as `detector.settings` reads them):
`DETECTOR_GROUP_WAIT`, `DETECTOR_GROUP_INTERVAL`, `DETECTOR_REPEAT_INTERVAL`,
`DETECTOR_RESOLVE_AFTER` (quiet period) for the lifecycle and
`DETECTOR_DELIVERY_DEADLINE` for delivery; `DETECTOR_UNREGISTERED` (page|digest|observe)
for the notification policy (`notifications:`, see `policy.py`).
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .delivery import RetryPolicy
from .http import BaseSink, SinkUnavailable
from .lifecycle import LifecycleConfig
from .notification import Notification
from .policy import NotificationPolicy
from .signing import DEFAULT_SECRET_ENV, Signer
from .sinks import build_sink
from .times import parse_duration_ms
from ..settings import split_csv

log = logging.getLogger(__name__)

CONFIG_ENV = "DETECTOR_ALERTING_CONFIG"
DEFAULT_CONFIG_PATH = Path("config/alerting.yaml")
WEBHOOK_URLS_ENV = "DETECTOR_WEBHOOK_URLS"
EXTERNAL_URL_ENV = "DETECTOR_EXTERNAL_URL"
MATCH_KEYS = ("severity", "owner", "experiment", "rule")
# Environment variable -> LifecycleConfig field (milliseconds); they override the file.
LIFECYCLE_ENV = {
    "DETECTOR_GROUP_WAIT": "group_wait_ms",
    "DETECTOR_GROUP_INTERVAL": "group_interval_ms",
    "DETECTOR_REPEAT_INTERVAL": "repeat_interval_ms",
    "DETECTOR_RESOLVE_AFTER": "resolve_quiet_period_ms",
}
DELIVERY_DEADLINE_ENV = "DETECTOR_DELIVERY_DEADLINE"


def _env_overrides(cfg: "AlertingConfig", env: Mapping[str, str]) -> None:
    """Apply the timing settings given in the environment (see the module docstring)."""
    lifecycle = {}
    for name, attr in LIFECYCLE_ENV.items():
        value = (env.get(name) or "").strip()
        if value:
            try:
                lifecycle[attr] = parse_duration_ms(value)
            except ValueError:
                raise ValueError(f"{name}={value!r} is not a duration (seconds, or e.g. 500ms, 5m)") from None
    if lifecycle:
        cfg.lifecycle = replace(cfg.lifecycle, **lifecycle)
    value = (env.get(DELIVERY_DEADLINE_ENV) or "").strip()
    if value:
        try:
            cfg.delivery = replace(cfg.delivery, deadline_s=parse_duration_ms(value) / 1000.0)
        except ValueError:
            raise ValueError(f"{DELIVERY_DEADLINE_ENV}={value!r} is not a duration") from None


def _as_patterns(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(str(v) for v in value)
    return (str(value),)


@dataclass(frozen=True)
class Route:
    sinks: tuple[str, ...]
    match: dict[str, tuple[str, ...]] = field(default_factory=dict)
    continue_: bool = False

    def matches(self, n: Notification) -> bool:
        for key, patterns in self.match.items():
            value = getattr(n, key) or ""
            if not any(fnmatch.fnmatchcase(str(value), p) for p in patterns):
                return False
        return True

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Route":
        match = dict(raw.get("match") or {})
        unknown = set(match) - set(MATCH_KEYS)
        if unknown:
            raise ValueError(f"route matches unknown keys {sorted(unknown)} (known: {MATCH_KEYS})")
        sinks = _as_patterns(raw.get("sinks")) or ()
        return cls(
            sinks=tuple(sinks),
            match={k: _as_patterns(v) or () for k, v in match.items()},
            continue_=bool(raw.get("continue", False)),
        )


@dataclass
class AlertingConfig:
    """Everything the alerting layer needs, resolved against the environment."""

    sinks: dict[str, BaseSink] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    catch_all: tuple[str, ...] = ()  # sinks that hear everything (the DETECTOR_WEBHOOK_URLS ones)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    delivery: RetryPolicy = field(default_factory=RetryPolicy)
    skipped: dict[str, str] = field(default_factory=dict)  # sink name -> why it is not active
    policy: NotificationPolicy = field(default_factory=NotificationPolicy)  # digests, observe mode, rate limits
    mitigation_signer: Signer | None = None  # the kill switch is signed like every webhook

    def sinks_for(self, n: Notification) -> list[BaseSink]:
        """The active sinks this notification goes to, in a stable order, without duplicates."""
        names: list[str] = []
        if self.routes:
            for route in self.routes:
                if route.matches(n):
                    names.extend(route.sinks)
                    if not route.continue_:
                        break
        else:
            names.extend(name for name in self.sinks if name not in self.catch_all)
        names.extend(self.catch_all)
        seen, out = set(), []
        for name in names:
            sink = self.sinks.get(name)
            if sink is not None and name not in seen and sink.accepts(n):
                seen.add(name)
                out.append(sink)
        return out


def parse_alerting(
    raw: Mapping[str, Any] | None,
    env: Mapping[str, str] | None = None,
    *,
    webhook_urls: tuple[str, ...] | None = None,
) -> AlertingConfig:
    """Build an `AlertingConfig` from the parsed YAML mapping and the environment.

    `env` is the environment as `Settings.environ` read it at start (the variables the file
    names); `webhook_urls` is `Settings.webhook_urls` (default: `DETECTOR_WEBHOOK_URLS` in `env`).
    """
    env = {} if env is None else env
    raw = dict(raw or {})
    external_url = raw.get("external_url") or env.get(str(raw.get("external_url_env", EXTERNAL_URL_ENV))) or None
    cfg = AlertingConfig(
        lifecycle=LifecycleConfig.from_dict(raw.get("lifecycle")),
        delivery=RetryPolicy.from_dict(raw.get("delivery")),
        policy=NotificationPolicy.from_dict(raw.get("notifications"), env),
    )
    _env_overrides(cfg, env)
    cfg.mitigation_signer = Signer.from_env(DEFAULT_SECRET_ENV, env)
    declared = dict(raw.get("sinks") or {})
    for name, spec in declared.items():
        if not isinstance(spec, Mapping):
            raise ValueError(f"sink {name!r}: expected a mapping")
        try:
            cfg.sinks[name] = build_sink(name, spec, env, external_url)
        except SinkUnavailable as exc:
            cfg.skipped[name] = str(exc)
            # The shipped config lists every kind of sink; those whose variables are unset are the
            # expected default, not a problem (a route that names only skipped sinks still warns).
            log.info("alerting: %s; sink skipped (set it to enable the sink)", exc)
    cfg.routes = [Route.from_dict(r) for r in raw.get("routes") or []]
    for route in cfg.routes:
        for name in route.sinks:
            if name not in declared:
                raise ValueError(f"route refers to undeclared sink {name!r}")
    urls = split_csv(env.get(WEBHOOK_URLS_ENV)) if webhook_urls is None else webhook_urls
    shortcut = []
    for i, url in enumerate(urls, 1):
        name = f"webhook-env-{i}"
        cfg.sinks[name] = build_sink(name, {"type": "webhook", "url": url, "secret_env": DEFAULT_SECRET_ENV}, env, external_url)
        shortcut.append(name)
    cfg.catch_all = tuple(shortcut)
    for name, sink in cfg.sinks.items():
        if sink.signer is None and getattr(type(sink), "default_secret_env", None):
            log.warning("alerting: sink %r sends unsigned webhooks (%s unset)", name, DEFAULT_SECRET_ENV)
    return cfg


def load_alerting(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    webhook_urls: tuple[str, ...] | None = None,
) -> AlertingConfig:
    """Load the alerting config from `path`, $DETECTOR_ALERTING_CONFIG in `env`, or config/alerting.yaml.

    A missing default file is fine (environment-only setup); a missing explicit path is an error.
    """
    env = {} if env is None else env
    explicit = path or env.get(CONFIG_ENV)
    file = Path(explicit) if explicit else DEFAULT_CONFIG_PATH
    raw: Mapping[str, Any] | None = None
    if file.exists():
        raw = yaml.safe_load(file.read_text()) or {}
    elif explicit:
        raise FileNotFoundError(f"alerting config {file} not found")
    return parse_alerting(raw, env, webhook_urls=webhook_urls)
