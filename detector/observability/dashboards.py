"""Grafana dashboards: the detector's own, and one generated per experiment.

    detector dashboard subs-mvp-crm-qa > subs-mvp-crm-qa.json      # import into Grafana
    detector dashboard subs-mvp-crm-qa --api                       # body for POST /api/dashboards/db
    detector dashboard --detector                                  # config/grafana/detector-dashboard.json

`experiment_dashboard(experiment)` is also what `GET /v1/experiments/{experiment}/dashboard.json`
serves. Dashboards use a `datasource` template variable (any Prometheus data source), so the
JSON imports unchanged into any Grafana >= 9. Queries aggregate with `max by (...)` so that
an experiment reported by two workers during a rebalance is not drawn twice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39
TAGS = ["exposure-detector"]


def promql_string(value: str) -> str:
    """`value` as a PromQL double-quoted string literal (escapes backslash, quote, newline)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _uid(prefix: str, name: str) -> str:
    """A stable Grafana uid (<= 40 chars of [A-Za-z0-9_-]) for a dashboard name."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:22]
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{prefix}-{slug}-{digest}"[:40]


class _Layout:
    """Places panels left to right on Grafana's 24-column grid."""

    def __init__(self):
        self.x = self.y = self.row_h = 0
        self.next_id = 1

    def place(self, w: int, h: int) -> dict[str, int]:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title: str) -> dict[str, Any]:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel = {"type": "row", "title": title, "id": self._id(), "collapsed": False, "panels": [],
                 "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}}
        self.y += 1
        return panel

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def panel(self, kind: str, title: str, targets: list[tuple[str, str]], *, w: int = 12, h: int = 8,
              unit: str | None = None, description: str = "", instant: bool = False,
              options: dict | None = None, field_config: dict | None = None,
              thresholds: list[tuple[float | None, str]] | None = None) -> dict[str, Any]:
        defaults: dict[str, Any] = dict(field_config or {})
        if unit:
            defaults["unit"] = unit
        if thresholds:
            defaults["thresholds"] = {"mode": "absolute",
                                      "steps": [{"value": v, "color": c} for v, c in thresholds]}
        return {
            "id": self._id(),
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DATASOURCE,
            "gridPos": self.place(w, h),
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr,
                 "legendFormat": legend, "instant": instant, "range": not instant}
                for i, (expr, legend) in enumerate(targets)
            ],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options or {},
        }


def _dashboard(title: str, uid: str, panels: list[dict], templating: list[dict], *,
               description: str, time_from: str = "now-6h", links: list[dict] | None = None) -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "timezone": "utc",
        "editable": True,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1},
            *templating,
        ]},
        "annotations": {"list": []},
        "links": links or [],
        "panels": panels,
    }


def experiment_dashboard(experiment: str) -> dict[str, Any]:
    """A Grafana dashboard of one experiment: observed exposure against its registration."""
    if not isinstance(experiment, str) or not experiment:
        raise ValueError("experiment must be a non-empty string")
    sel = f"experiment={promql_string(experiment)}"
    m = "exposure_detector_experiment_"
    L = _Layout()
    firing = {"mappings": [{"type": "value", "options": {
        "0": {"text": "ok", "color": "green"}, "1": {"text": "firing", "color": "red"}}}]}
    panels = [
        L.row("Exposure"),
        L.panel("stat", "Enrolled users", [(f"max({m}enrolled_users{{{sel}}})", "enrolled")],
                w=4, h=4, description="Distinct enrolled users (estimate)."),
        L.panel("stat", "Declared max users", [(f"max({m}declared_max_users{{{sel}}})", "declared max")],
                w=4, h=4, description="max_users of the registration (empty: not declared)."),
        L.panel("stat", "Observed fraction", [(f"max({m}observed_fraction{{{sel}}})", "observed")],
                w=4, h=4, unit="percentunit"),
        L.panel("stat", "Declared fraction", [(f"max({m}declared_fraction{{{sel}}})", "declared")],
                w=4, h=4, unit="percentunit"),
        L.panel("stat", "Rules firing", [(f"sum(max by (rule) ({m}rule_state{{{sel}}}))", "firing")],
                w=4, h=4, thresholds=[(None, "green"), (1, "red")]),
        L.panel("stat", "Open incidents", [(f"max({m}open_incidents{{{sel}}})", "open")],
                w=4, h=4, thresholds=[(None, "green"), (1, "red")]),
        L.panel("timeseries", "Distinct users vs declared max users", [
            (f"max({m}enrolled_users{{{sel}}})", "enrolled users"),
            (f"max({m}eligible_users{{{sel}}})", "eligible users"),
            (f"max({m}declared_max_users{{{sel}}})", "declared max users"),
        ], unit="short", description="A breach of max_users shows as the enrolled line crossing the declared one."),
        L.panel("timeseries", "Observed fraction vs declared fraction", [
            (f"max({m}observed_fraction{{{sel}}})", "observed fraction"),
            (f"max({m}declared_fraction{{{sel}}})", "declared fraction"),
        ], unit="percentunit"),
        L.row("Variants"),
        L.panel("timeseries", "Distinct users per variant", [
            (f"max by (variant) ({m}variant_users{{{sel}}})", "{{variant}}"),
        ], unit="short"),
        L.panel("timeseries", "Variant share: observed vs declared", [
            (f"max by (variant) ({m}variant_users{{{sel}}}) / scalar(sum(max by (variant) ({m}variant_users{{{sel}}})))",
             "observed {{variant}}"),
            (f"max by (variant) ({m}declared_variant_weight{{{sel}}})", "declared {{variant}}"),
        ], unit="percentunit", description="Sample ratio: the observed split should track the declared one."),
        L.row("Rules"),
        L.panel("state-timeline", "Rule states", [
            (f"max by (rule) ({m}rule_state{{{sel}}})", "{{rule}}"),
        ], w=24, h=6, field_config=firing, thresholds=[(None, "green"), (1, "red")],
            options={"showValue": "auto", "mergeValues": True}),
        L.panel("timeseries", "Rule statistic vs threshold", [
            (f"max by (rule) ({m}rule_statistic{{{sel}}})", "{{rule}} statistic"),
            (f"max by (rule) ({m}rule_threshold{{{sel}}})", "{{rule}} threshold"),
        ]),
        L.panel("timeseries", "Events processed", [
            (f"sum(rate({m}events_total{{{sel}}}[$__rate_interval]))", "events/s"),
        ], unit="ops"),
    ]
    return _dashboard(
        f"Exposure: {experiment}", _uid("exposure", experiment), panels, [],
        description=f"Observed exposure of experiment {experiment} against its registration.",
        links=[{"title": "Exposure detector", "type": "dashboards", "tags": TAGS, "asDropdown": True}],
    )


def detector_dashboard() -> dict[str, Any]:
    """The detector's own dashboard (config/grafana/detector-dashboard.json is this, rendered)."""
    p = "exposure_detector_"
    L = _Layout()
    panels = [
        L.row("Health"),
        L.panel("stat", "Workers up", [('sum(up{job="exposure-detector"})', "up")], w=4, h=4,
                thresholds=[(None, "red"), (1, "green")]),
        L.panel("stat", "Events/s", [(f"sum(rate({p}events_consumed_total[$__rate_interval]))", "events/s")],
                w=4, h=4, unit="ops"),
        L.panel("stat", "Consumer lag", [(f"sum({p}consumer_lag)", "lag")], w=4, h=4,
                thresholds=[(None, "green"), (1000, "orange"), (100000, "red")]),
        L.panel("stat", "Event-time delay", [(f"time() - max({p}last_event_timestamp_seconds)", "delay")],
                w=4, h=4, unit="s", description="Now minus the event time of the newest processed event."),
        L.panel("stat", "Experiments in breach",
                [(f"count(max by (experiment) ({p}experiment_rule_state) == 1) or vector(0)", "in breach")],
                w=4, h=4, thresholds=[(None, "green"), (1, "red")]),
        L.panel("stat", "Build", [(f"max by (version, python) ({p}build_info)", "{{version}} / py {{python}}")],
                w=4, h=4, instant=True, options={"textMode": "name"}),
        L.row("Throughput"),
        L.panel("timeseries", "Throughput", [
            (f"sum(rate({p}events_consumed_total[$__rate_interval]))", "consumed"),
            (f"sum(rate({p}events_decoded_total[$__rate_interval]))", "decoded"),
            (f"sum(rate({p}dead_lettered_total[$__rate_interval]))", "dead-lettered"),
        ], unit="ops"),
        L.panel("timeseries", "Consumer lag per partition", [
            (f"max by (topic, partition) ({p}consumer_lag)", "{{topic}}/{{partition}}"),
        ], unit="short"),
        L.panel("timeseries", "Dead letters by reason", [
            (f"sum by (reason) (rate({p}dead_lettered_total[$__rate_interval]))", "{{reason}}"),
        ], unit="ops"),
        L.panel("timeseries", "Batch duration", [
            (f"histogram_quantile(0.99, sum by (le) (rate({p}batch_duration_seconds_bucket[$__rate_interval])))", "p99"),
            (f"histogram_quantile(0.5, sum by (le) (rate({p}batch_duration_seconds_bucket[$__rate_interval])))", "p50"),
        ], unit="s"),
        L.panel("timeseries", "Batch size", [
            (f"sum(rate({p}batch_size_events_sum[$__rate_interval])) / sum(rate({p}batch_size_events_count[$__rate_interval]))",
             "mean events per batch"),
        ], unit="short"),
        L.panel("timeseries", "Processing freshness", [
            (f"time() - max({p}last_batch_timestamp_seconds)", "since last batch"),
            (f"time() - max({p}last_event_timestamp_seconds)", "event-time delay"),
        ], unit="s"),
        L.row("Notifications"),
        L.panel("timeseries", "Notifications by outcome", [
            (f"sum by (sink, outcome) (increase({p}notifications_total[$__rate_interval]))", "{{sink}} {{outcome}}"),
        ], unit="short"),
        L.panel("timeseries", "Webhook delivery duration p99", [
            (f"histogram_quantile(0.99, sum by (sink, le) (rate({p}webhook_delivery_duration_seconds_bucket[$__rate_interval])))",
             "{{sink}}"),
        ], unit="s"),
        L.row("Experiments"),
        L.panel("table", "Experiments in breach", [
            # Same expression as the ExperimentExposureBreach alert (config/prometheus/rules).
            (f"(max by (experiment, rule) ({p}experiment_rule_state) == 1)"
             f" * on (experiment) group_left (severity, owner) max by (experiment, severity, owner) ({p}experiment_info)"
             f" or on (experiment, rule) (max by (experiment, rule) ({p}experiment_rule_state) == 1)",
             "{{experiment}} {{rule}}"),
        ], w=24, instant=True, description="Rules currently firing, with the severity and owner of the registration.",
            options={"showHeader": True}),
        L.panel("table", "Exposure per experiment", [
            (f"max by (experiment) ({p}experiment_enrolled_users)", "enrolled"),
            (f"max by (experiment) ({p}experiment_declared_max_users)", "declared max"),
            (f"max by (experiment) ({p}experiment_observed_fraction)", "observed fraction"),
            (f"max by (experiment) ({p}experiment_declared_fraction)", "declared fraction"),
            (f"max by (experiment) ({p}experiment_open_incidents)", "open incidents"),
        ], w=24, instant=True, options={"showHeader": True}),
        L.row("Registrations and API"),
        L.panel("timeseries", "Registrations by source", [
            (f"sum by (source) (increase({p}registrations_written_total[$__rate_interval]))", "written {{source}}"),
            (f"sum by (source, reason) (increase({p}registrations_rejected_total[$__rate_interval]))",
             "rejected {{source}} {{reason}}"),
        ], unit="short"),
        L.panel("timeseries", "HTTP requests by route and status", [
            (f"sum by (route, status) (rate({p}http_requests_total[$__rate_interval]))", "{{route}} {{status}}"),
        ], unit="reqps"),
    ]
    # Table transformations: merge the instant queries on the experiment label.
    for panel in panels:
        if panel["type"] == "table":
            panel["transformations"] = [{"id": "merge", "options": {}},
                                        {"id": "organize", "options": {"excludeByName": {"Time": True}}}]
    return _dashboard("Exposure detector", "exposure-detector", panels, [],
                      description="Health of the exposure detector and experiments in breach.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="detector dashboard",
                                     description="Print a Grafana dashboard (JSON) for an experiment.")
    parser.add_argument("experiment", nargs="?", help="experiment key")
    parser.add_argument("--detector", action="store_true", help="print the detector's own dashboard instead")
    parser.add_argument("--api", action="store_true",
                        help='wrap as {"dashboard": ..., "overwrite": true} for POST /api/dashboards/db')
    parser.add_argument("--compact", action="store_true", help="no indentation")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.detector == bool(args.experiment):
        parser.print_usage(sys.stderr)
        print("detector dashboard: give EXPERIMENT or --detector", file=sys.stderr)
        return 2
    try:
        dashboard = detector_dashboard() if args.detector else experiment_dashboard(args.experiment)
    except ValueError as exc:
        print(f"detector dashboard: {exc}", file=sys.stderr)
        return 1
    body = {"dashboard": dashboard, "overwrite": True} if args.api else dashboard
    print(json.dumps(body, indent=None if args.compact else 2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
