"""Sinks: one module per integration, all the same shape (see `detector.alerts.http.BaseSink`).

To add a sink, write its module and add its class to `SINK_TYPES` below; the
`type:` key in config/alerting.yaml selects it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from ..http import BaseSink, sink_from_spec
from .alertmanager import AlertmanagerSink
from .alertmanager_webhook import AlertmanagerWebhookSink
from .pagerduty import PagerDutySink
from .slack import SlackSink
from .webhook import WebhookSink

SINK_TYPES: dict[str, type[BaseSink]] = {
    cls.type: cls
    for cls in (WebhookSink, AlertmanagerWebhookSink, AlertmanagerSink, PagerDutySink, SlackSink)
}


def build_sink(name: str, spec: Mapping[str, Any], env: Mapping[str, str], external_url: str | None = None) -> BaseSink:
    """Instantiate the sink named `name` from its config entry. Raises SinkUnavailable or ValueError."""
    kind = spec.get("type")
    cls = SINK_TYPES.get(str(kind))
    if cls is None:
        raise ValueError(f"sink {name!r}: unknown type {kind!r} (known: {', '.join(sorted(SINK_TYPES))})")
    custom = getattr(cls, "from_spec", None)
    if custom is not None:
        return cast(BaseSink, custom(name, spec, env, external_url))
    return sink_from_spec(cls, name, spec, env, external_url)


__all__ = ["SINK_TYPES", "build_sink", "WebhookSink", "AlertmanagerWebhookSink", "AlertmanagerSink", "PagerDutySink", "SlackSink"]
