"""HTTP routes on Faust's aiohttp server: health, metrics, registrations, incidents."""

from __future__ import annotations

import time

from aiohttp import web

from detector.observability.dashboards import experiment_dashboard
from detector.web.console import Console, add_console_routes
from detector.web.console.app import SingleToken
from detector.web.expectations_api import add_routes as add_expectation_routes
from detector.web.incidents_api import add_routes as add_incident_routes


def add_routes(app: web.Application, *, settings, metrics, registrations, ingest, publisher, incidents, started_at):
    app.middlewares.append(metrics.aiohttp_middleware())
    r = app.router

    async def healthz(request: web.Request) -> web.Response:
        # Liveness: the process serves HTTP. Readiness says whether it can do its job.
        return web.json_response({"status": "ok", "uptime_s": round(time.time() - started_at, 1)})

    async def readyz(request: web.Request) -> web.Response:
        ready = ingest.connected and ingest.consumer is not None
        body = {"ready": ready, "kafka": "connected" if ingest.connected else "unreachable",
                "partitions": sorted(ingest.partitions), "last_batch_at": ingest.last_batch_at or None}
        return web.json_response(body, status=200 if ready else 503)

    async def metrics_view(request: web.Request) -> web.Response:
        body, content_type = metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def dashboard(request: web.Request) -> web.Response:
        return web.json_response(experiment_dashboard(request.match_info["experiment"]))

    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics_view)
    r.add_get("/v1/experiments/{experiment}/dashboard.json", dashboard)
    add_expectation_routes(r, registrations, token=settings.api_token or None)
    # Incidents (list, timeline JSON/Markdown, ack, resolve) and blast radius: detector/web/incidents_api.py
    incidents_api = add_incident_routes(r, publisher=publisher, incidents=incidents, ingest=ingest,
                                        registrations=registrations, token=settings.api_token or None)
    # The console: pages for people over the same services (detector/web/console).
    add_console_routes(app, Console(registrations=registrations, incidents=incidents_api, ingest=ingest,
                                    principals=SingleToken(settings.api_token or None),
                                    session_secret=settings.session_secret or None,
                                    external_url=settings.external_url or None))
