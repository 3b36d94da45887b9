"""Alerting: findings -> incidents -> notifications -> signed, retried HTTP deliveries.

A pipeline of small named stages, as in Alertmanager's `notify/`:

  lifecycle.py     findings become incidents (dedup, group, repeat, resolve); pure, no clock
  notification.py  the outbox record (`exposure.alerts`), deterministic ids
  incident.py      incident state and its timeline entries; timeline.py renders them (JSON, Markdown)
  routing.py       config/alerting.yaml + environment -> sinks and routes
  sinks/           one module per integration: webhook, alertmanager_webhook, alertmanager, pagerduty, slack
  signing.py       Standard Webhooks signatures
  delivery.py      timeout, retry with backoff and jitter, Retry-After, deadline -> outcome
  mitigation.py    the opt-in kill_url call
"""

from .delivery import DeliveryOutcome, RetryPolicy, deliver, deliver_to_all
from .incident import Incident, TimelineEntry
from .lifecycle import Lifecycle, LifecycleConfig
from .notification import BlastRadius, Notification
from .routing import AlertingConfig, load_alerting, parse_alerting
from .timeline import timeline_dict, timeline_json

__all__ = [
    "AlertingConfig", "BlastRadius", "DeliveryOutcome", "Incident", "Lifecycle", "LifecycleConfig",
    "Notification", "RetryPolicy", "TimelineEntry", "deliver", "deliver_to_all", "load_alerting",
    "parse_alerting", "timeline_dict", "timeline_json",
]
