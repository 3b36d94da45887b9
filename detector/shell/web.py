"""HTTP routes on Faust's aiohttp server: health, metrics, registrations, incidents.

Every route is registered with its access rule (`detector.web.auth.add_route`) behind the one
middleware stack of `detector.web.middleware` (errors, body size, auth); a route without a rule
stops the worker at start-up.
"""

from __future__ import annotations

import time

from aiohttp import web

from detector.alerts.outbound import KillUrlPolicy
from detector.flags.http import add_routes as add_flag_routes
from detector.flags.sources import unconfigured_flag_source
from detector.observability.dashboards import experiment_dashboard
from detector.web import auth
from detector.web.auth import PUBLIC, STATUS, add_route
from detector.web.collector import add_collector_routes
from detector.web.console import Console, add_console_routes
from detector.web.discovery_api import add_routes as add_discovery_routes
from detector.web.registrations_api import add_routes as add_registration_routes
from detector.web.incidents_api import add_routes as add_incident_routes
from detector.web.middleware import install


def add_routes(app: web.Application, *, settings, metrics, registrations, ingest, publisher, incidents, started_at,
               exposures=None, fleet=None, flags=None, source_metrics=None, tokens=None):
    app.middlewares.append(metrics.aiohttp_middleware())
    if tokens is None:  # the worker passes the store it checked at start-up
        tokens = auth.load_tokens(settings.api_token, settings.api_tokens_file)
    install(app, tokens=tokens, anonymous_read=settings.anonymous_read, registry=metrics.registry)
    if fleet is not None:  # any worker answers as the owner would (detector/web/fleet.py); after auth
        fleet.install(app)
    r = app.router

    async def healthz(request: web.Request) -> web.Response:
        # Liveness: the process serves HTTP. Readiness says whether it can do its job.
        return web.json_response({"status": "ok", "uptime_s": round(time.time() - started_at, 1)})

    async def readyz(request: web.Request) -> web.Response:
        # Ready = Kafka answers, partitions are assigned and their state restored. A worker with no
        # partitions (more workers than partitions, or mid-rebalance) has nothing to serve.
        rebalancing = bool(getattr(ingest, "rebalancing", False))
        ready = ingest.connected and ingest.consumer is not None and bool(ingest.partitions) and not rebalancing
        body = {"ready": ready, "kafka": "connected" if ingest.connected else "unreachable",
                "partitions": sorted(ingest.partitions), "rebalancing": rebalancing,
                "last_batch_at": ingest.last_batch_at or None}
        if flags is not None:  # a flag source outage is a detail, not unreadiness: detection goes on
            body["flag_sources"] = flags.sources_view()
        return web.json_response(body, status=200 if ready else 503)

    async def metrics_view(request: web.Request) -> web.Response:
        body, content_type = metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def dashboard(request: web.Request) -> web.Response:
        return web.json_response(experiment_dashboard(request.match_info["experiment"]))

    add_route(r, "GET", "/healthz", healthz, access=PUBLIC)
    add_route(r, "GET", "/readyz", readyz, access=PUBLIC)
    add_route(r, "GET", "/metrics", metrics_view, access=STATUS)
    add_route(r, "GET", "/v1/experiments/{experiment}/dashboard.json", dashboard, access=STATUS)
    kill_policy = KillUrlPolicy.from_settings(settings)
    specs = [st.spec for st in flags.states.values()] if flags is not None else []
    add_registration_routes(r, registrations, kill_url_problem=kill_policy.url_problem,
                           extra_risks=lambda new: unconfigured_flag_source(new, specs))
    # Incidents (list, timeline JSON/Markdown, ack, resolve) and blast radius: detector/web/incidents_api.py
    incidents_api = add_incident_routes(r, publisher=publisher, incidents=incidents, ingest=ingest,
                                        registrations=registrations, base_url=settings.external_url or None)
    # The console: pages for people over the same services (detector/web/console). Its sessions
    # name a token of the same store, so the same scopes apply.
    console = Console(registrations=registrations, incidents=incidents_api, ingest=ingest,
                      principals=tokens, session_secret=settings.session_secret or None,
                      api_token=settings.api_token or None,
                      external_url=settings.external_url or None)
    add_console_routes(app, console)
    if fleet is not None:  # forwarded console pages carry the session's principal, not its cookie
        fleet.session_hop = console.hop
    # What was observed, for drafting registrations (detector discover): detector/web/discovery_api.py
    add_discovery_routes(r, exposures=exposures)
    # Flag configurations: the push webhook and GET /v1/flags (detector/flags/http.py).
    add_flag_routes(r, flags)
    # The HTTP collector: POST /v1/assignments and /v1/sources/{format} (detector/web/collector.py).
    add_collector_routes(r, settings=settings, ingest=ingest, metrics=source_metrics)
    # Faust adds its own index page at "/" ({"status": "OK"}) after this (the console's "/" wins).
    auth.declare_framework_route(app, "GET", "/", PUBLIC)
    auth.check_routes(app)
