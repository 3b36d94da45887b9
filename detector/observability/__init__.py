"""Observability of the detector: Prometheus metrics, structured logs, Grafana dashboards.

- `metrics.DetectorMetrics`: every metric the detector exports, in its own registry.
- `logging.setup_logging`: JSON log lines carrying `experiment` / `incident_id`.
- `dashboards.experiment_dashboard`: a generated Grafana dashboard for one experiment.

Submodules are imported on use so that `import detector.observability` stays cheap.
"""
