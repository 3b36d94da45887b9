"""The Faust application: topics, tables, agents and web routes. Wiring only.

  exposure.assignments  --(IngestService: batch reader, engine)-->  exposure.alerts, exposure.timeline
  exposure.expectations --(agent fold_registrations)-->  GlobalTable registrations (+ history)
  exposure.alerts       --(agent deliver_notifications)-->  sinks; Table deliveries (dedup)
  exposure.timeline     --(agent fold_incidents)-->  GlobalTable incidents (views)
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
import orjson

from detector import __version__
from detector.alerts.outbound import KillUrlPolicy
from detector.alerts.routing import AlertingConfig, load_alerting
from detector.web.auth import TokenStore
from detector.engine import observe
from detector.flags.sources import parse_sources
from detector.flags.watcher import FlagMetrics, FlagWatcher, owned_partition, users_per_day
from detector.ingest.service import IngestService
from detector.observability.metrics import DetectorMetrics
from detector.settings import Settings
from detector.shell.changelog_mirror import ChangelogMirror
from detector.shell.alpha_budget import AlphaBudgetWatch
from detector.shell.courier import Courier, fold_timeline
from detector.shell.observation import exposure_of, exposures, observation_view
from detector.shell.outbox import AlertPublisher
from detector.registration.store import KafkaRegistrationService, ParsedRegistrations, RegistrationFold
from detector.shell.web import add_routes
from detector.sources.metrics import SourceMetrics
from detector.web.registrations_api import MAX_BODY_BYTES
from detector.web.fleet import Fleet

log = logging.getLogger(__name__)

MIRRORED = ("registrations", "registration-history", "incidents")  # tables every worker reads whole



def create_app(settings: Settings | None = None, alerting: AlertingConfig | None = None,
               tokens: TokenStore | None = None) -> faust.App:
    """The app; `alerting` and `tokens` are what the worker already loaded and checked (else loaded here)."""
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
        broker_credentials=settings.kafka.faust_credentials(),
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
    )
    metrics = DetectorMetrics(version=__version__)
    if alerting is None:
        alerting = load_alerting(settings.alerting_config if _exists(settings.alerting_config) else None,
                                 settings.environ, webhook_urls=settings.webhook_urls)

    raw: dict[str, Any] = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=p)
    expectations_topic = app.topic(settings.topics.expectations, **raw)
    alerts_topic = app.topic(settings.topics.alerts, **raw)
    timeline_topic = app.topic(settings.topics.timeline, **raw)

    registrations = app.GlobalTable("registrations", partitions=p)
    registration_history = app.GlobalTable("registration-history", partitions=p)
    incidents = app.GlobalTable("incidents", partitions=p)
    deliveries = app.Table("deliveries", partitions=p)
    # Digest numbering and rate-limit windows: written from the ingest loop and a timer, so keyed by
    # the partitioner rather than the event being processed.
    dispatch = app.Table("dispatch", partitions=p, use_partitioner=True)

    # Every worker reads the tables whole from their changelogs (detector/shell/changelog_mirror.py):
    # the agents below write the Faust tables; everything else reads the mirrors.
    async def on_table_change(table: str, key: str) -> None:
        if table == "registrations":
            alpha_watch.changed()
            if key not in mirror.table("registrations"):
                metrics.remove_experiment(key)
            await ingest.reevaluate(key)  # acts only on the worker that owns the experiment

    mirror = ChangelogMirror(settings, {name: f"{settings.faust_id}-{name}-changelog" for name in MIRRORED},
                             on_change=on_table_change, loop=app.loop)
    app.service(mirror)  # type: ignore[arg-type]
    parsed = ParsedRegistrations(mirror.table("registrations"))
    publisher = AlertPublisher(alerting.lifecycle, parsed.get, settings.topics, metrics, policy=alerting.policy,
                               digest_store=dispatch, engine_config=settings.engine_config)
    alpha_watch = AlphaBudgetWatch(parsed.all, settings.false_page_budget, settings.engine_config.alpha,
                                   metrics.registry, lambda: int(time.time() * 1000))
    fleet = Fleet(settings, experiment_of_incident=lambda iid: _experiment_of_incident(
        publisher, mirror.table("incidents"), iid))
    source_metrics = SourceMetrics(metrics.registry)
    ingest = IngestService(settings, registration_of=parsed.get, alerts=publisher, metrics=metrics, loop=app.loop,
                           assignor=fleet.assignor, source_metrics=source_metrics)
    fleet.ingest = ingest
    publisher.exposure_of = exposure_of(ingest, parsed.get)  # the digest lists what the engine observed
    app.service(ingest)  # type: ignore[arg-type]  # faust accepts an instance; its stub says a class
    courier = Courier(alerting, parsed.get, settings.topics, metrics, kill_policy=KillUrlPolicy.from_settings(settings),
                      store=dispatch)
    flag_specs = parse_sources(settings.flag_sources)
    flags = None
    if flag_specs:  # flag configurations compared with registrations (detector.flags)
        flags = FlagWatcher(
            flag_specs, registrations=parsed.all, publisher=publisher, lock=ingest.lock,
            owner_of=lambda e: owned_partition(ingest, settings.topics.assignments, e),
            rate_of=lambda e: users_per_day(ingest.state_of(e)), metrics=FlagMetrics(metrics.registry),
            interval_s=settings.flag_poll_interval_s, timeout_s=settings.flag_fetch_timeout_s,
            unleash_token=settings.unleash_api_token, flagd_token=settings.flagd_auth_token, loop=app.loop,
        )
        app.service(flags)  # type: ignore[arg-type]  # an instance, as for the ingest service

    def observation(experiment: str):
        state = ingest.state_of(experiment)
        return None if state is None else observation_view(observe(state, parsed.get(experiment),
                                                                   settings.engine_config))

    async def send_registration(key: bytes, value: bytes) -> None:
        await expectations_topic.send(key=key, value=value)

    reg_service = KafkaRegistrationService(send_registration, parsed, mirror.table("registration-history"),
                                           observation, metrics)
    # The fold reads and writes the Faust tables of the partitions its agent consumes.
    fold = RegistrationFold(ParsedRegistrations(registrations), registrations, registration_history, metrics)

    @app.agent(expectations_topic)
    async def fold_registrations(stream):
        async for event in stream.events():
            # Re-judging happens on the experiment's owner when the change reaches its mirror.
            fold.apply(event.key, event.value)

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

    @app.timer(1.0)
    async def flush_rate_limit_summaries():
        async def send(topic, key, value):
            await app.producer.send_and_wait(topic, key, value, partition=None, timestamp=None, headers=None)

        await courier.flush_held(send)

    @app.timer(30.0)
    async def check_alpha_budget():
        alpha_watch.check()  # a WARNING and detector_alpha_committed (README "Statistics")

    @app.timer(2.0)
    async def refresh_experiment_metrics():
        # Only experiments that changed: observing all of them every 2 s cost ~10% of the CPU.
        for exp in ingest.take_changed():
            state = ingest.state_of(exp)
            if state is not None:
                metrics.update_experiment(exp, observe(state, parsed.get(exp), settings.engine_config))
        lags = await ingest.lags()
        metrics.replace_consumer_lags(lags)
        source_metrics.set_lags(lags, {t: s.format for t, s in ingest.sources.items()})

    add_routes(
        app.web.web_app,  # type: ignore[attr-defined]  # the aiohttp driver's application
        settings=settings,
        metrics=metrics,
        registrations=reg_service,
        ingest=ingest,
        publisher=publisher,
        incidents=mirror.table("incidents"),
        started_at=time.time(),
        exposures=lambda include_registered=False: exposures(ingest, publisher, parsed.get,
                                                             include_registered=include_registered),
        fleet=fleet,
        tokens=tokens,
        flags=flags,
        source_metrics=source_metrics,
    )
    app.detector = {  # type: ignore[attr-defined]
        "ingest": ingest, "publisher": publisher, "metrics": metrics, "registrations": reg_service, "flags": flags,
    }
    return app


def _experiment_of_incident(publisher, incidents, iid: str) -> str | None:
    hit = publisher.find(iid)
    if hit is not None:
        return hit[1].experiment
    row = incidents.get(iid) or {}
    return (row.get("incident") or {}).get("experiment")


def _exists(path: str) -> bool:
    import os

    return bool(path) and os.path.exists(path)
