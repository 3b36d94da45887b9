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
from detector.alerts.outbound import KillUrlPolicy
from detector.alerts.routing import load_alerting
from detector.engine import observe
from detector.ingest.service import IngestService
from detector.observability.metrics import DetectorMetrics
from detector.settings import Settings
from detector.shell.courier import Courier, fold_timeline
from detector.shell.observation import observation_view
from detector.shell.outbox import AlertPublisher
from detector.registration.store import KafkaRegistrationService, ParsedRegistrations, RegistrationFold
from detector.shell.web import add_routes
from detector.web.expectations_api import MAX_BODY_BYTES

log = logging.getLogger(__name__)



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
        # aiohttp's own cap sits just above ours, so the handler answers 413 with its problem body.
        web_application_options={"client_max_size": MAX_BODY_BYTES + 4096},
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
    alerting = load_alerting(settings.alerting_config if _exists(settings.alerting_config) else None,
                             settings.environ, webhook_urls=settings.webhook_urls)

    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=p)
    expectations_topic = app.topic(settings.topics.expectations, **raw)
    alerts_topic = app.topic(settings.topics.alerts, **raw)
    timeline_topic = app.topic(settings.topics.timeline, **raw)

    registrations = app.GlobalTable("registrations", partitions=p)
    registration_history = app.GlobalTable("registration-history", partitions=p)
    incidents = app.GlobalTable("incidents", partitions=p)
    deliveries = app.Table("deliveries", partitions=p)

    parsed = ParsedRegistrations(registrations)
    publisher = AlertPublisher(alerting.lifecycle, parsed.get, settings.topics, metrics,
                               engine_config=settings.engine_config)
    ingest = IngestService(settings, expectation_of=parsed.get, alerts=publisher, metrics=metrics, loop=app.loop)
    app.service(ingest)
    courier = Courier(alerting, parsed.get, settings.topics, metrics, kill_policy=KillUrlPolicy.from_settings(settings))

    def observation(experiment: str):
        state = ingest.state_of(experiment)
        return None if state is None else observation_view(observe(state, parsed.get(experiment),
                                                                   settings.engine_config))

    async def send_registration(key: bytes, value: bytes) -> None:
        await expectations_topic.send(key=key, value=value)

    reg_service = KafkaRegistrationService(send_registration, parsed, registration_history, observation, metrics)
    fold = RegistrationFold(parsed, registrations, registration_history, metrics)

    @app.agent(expectations_topic)
    async def fold_registrations(stream):
        async for event in stream.events():
            changed = fold.apply(event.key, event.value)
            if changed is not None:
                await ingest.reevaluate(changed)

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
                metrics.update_experiment(exp, observe(state, parsed.get(exp)))
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
