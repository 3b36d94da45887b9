"""The Faust application: topics, tables, agents and web routes. Wiring only.

  exposure.assignments  --(IngestService: batch reader, engine)-->  exposure.alerts, exposure.timeline
  exposure.expectations --(agent fold_registrations)-->  GlobalTable registrations (+ history)
  exposure.alerts       --(agent deliver_notifications)-->  sinks; Table deliveries (dedup)
  exposure.timeline     --(agent fold_incidents)-->  GlobalTable incidents (views)
"""

from __future__ import annotations

import logging
import time

import faust
import orjson

from detector import __version__
from detector.alerts.routing import load_alerting
from detector.engine import observe
from detector.ingest.service import IngestService
from detector.observability.metrics import DetectorMetrics
from detector.registrations import ParsedRegistrations, decode_record
from detector.registration.model import RegistrationError, parse_expectation
from detector.settings import Settings
from detector.shell.courier import Courier, fold_timeline
from detector.shell.observation import observation_view
from detector.shell.outbox import AlertPublisher
from detector.shell.registry import KafkaRegistrationService, history_entry
from detector.shell.web import add_routes

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024 + 4096  # registration bodies are capped at 1 MiB (413 beyond)


def create_app(settings: Settings | None = None) -> faust.App:
    settings = settings or Settings()
    p = settings.partitions
    app = faust.App(
        settings.faust_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=settings.data_dir,
        autodiscover=False,
        topic_partitions=p,
        topic_allow_declare=True,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_application_options={"client_max_size": MAX_BODY_BYTES},
        # Faust's debug views would expose table contents (allowlists hold user ids).
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        producer_acks=-1,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
    )
    metrics = DetectorMetrics(version=__version__)
    alerting = load_alerting(settings.alerting_config if _exists(settings.alerting_config) else None)

    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=p)
    expectations_topic = app.topic(settings.topics.expectations, **raw)
    alerts_topic = app.topic(settings.topics.alerts, **raw)
    timeline_topic = app.topic(settings.topics.timeline, **raw)

    registrations = app.GlobalTable("registrations", partitions=p)
    registration_history = app.GlobalTable("registration-history", partitions=p)
    incidents = app.GlobalTable("incidents", partitions=p)
    deliveries = app.Table("deliveries", partitions=p)

    parsed = ParsedRegistrations(registrations)
    publisher = AlertPublisher(alerting.lifecycle, parsed.get, settings.topics, metrics)
    ingest = IngestService(settings, expectation_of=parsed.get, alerts=publisher, metrics=metrics, loop=app.loop)
    app.service(ingest)
    courier = Courier(alerting, parsed.get, settings.topics, metrics)

    def observation(experiment: str):
        state = ingest.state_of(experiment)
        return None if state is None else observation_view(observe(state, parsed.get(experiment)))

    reg_service = KafkaRegistrationService(expectations_topic, registrations, registration_history, observation, metrics)

    @app.agent(expectations_topic)
    async def fold_registrations(stream):
        async for event in stream.events():
            key = (event.key or b"").decode("utf-8", "replace")
            try:
                record = decode_record(event.value)
                if record["registration"] is not None:
                    parse_expectation(record["registration"], path_experiment=key)
            except (ValueError, RegistrationError) as exc:
                # Only our API/CLI/YAML write here, all validated; anything else is counted and ignored.
                log.error("invalid registration record for %r ignored: %s", key, exc)
                metrics.record_registration("topic", "rejected", "invalid")
                continue
            registration_history[key] = [*(registration_history.get(key) or []), history_entry(registrations.get(key), record)][-100:]
            if record["registration"] is None:
                if key in registrations:
                    del registrations[key]
                metrics.remove_experiment(key)
            else:
                registrations[key] = record["registration"]
            await ingest.reevaluate(key)

    @app.agent(alerts_topic)
    async def deliver_notifications(stream):
        async def send(topic, key, value):
            await app.producer.send_and_wait(topic, key, value, partition=None, timestamp=None, headers=None)

        async for value in stream:
            await courier.handle(value, deliveries, send)

    @app.agent(timeline_topic)
    async def fold_incidents(stream):
        async for event in stream.events():
            try:
                entry = orjson.loads(event.value)
            except orjson.JSONDecodeError:
                continue
            key = event.key.decode()
            incidents[key] = fold_timeline(incidents.get(key), entry)

    @app.timer(2.0)
    async def refresh_experiment_metrics():
        # Only experiments that changed: observing all of them every 2 s cost ~10% of the CPU.
        for exp in ingest.take_changed():
            state = ingest.state_of(exp)
            if state is not None:
                reg = parsed.get(exp)
                obs = observe(state, reg).to_dict()
                if reg is not None and reg.owner:  # the engine's expected side has no owner
                    obs["expected"] = {**obs["expected"], "owner": reg.owner}
                metrics.update_experiment(exp, obs)
        metrics.replace_consumer_lags(await ingest.lags())

    add_routes(
        app.web.web_app,
        settings=settings,
        metrics=metrics,
        registrations=reg_service,
        ingest=ingest,
        publisher=publisher,
        incidents=incidents,
        started_at=time.time(),
    )
    app.detector = {"ingest": ingest, "publisher": publisher, "metrics": metrics, "registrations": reg_service}
    return app


def _exists(path: str) -> bool:
    import os

    return bool(path) and os.path.exists(path)
