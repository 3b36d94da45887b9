"""HTTP routes on Faust's aiohttp server: health, metrics, registrations, incidents."""

from __future__ import annotations

import time

from aiohttp import web

from detector.alerts.timeline import timeline_dict, timeline_markdown
from detector.observability.dashboards import experiment_dashboard
from detector.web.expectations_api import add_routes as add_expectation_routes


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

    def incident_view(iid: str) -> dict | None:
        # Local incidents (this worker's partitions) are freshest; others come from the table.
        hit = publisher.find(iid)
        if hit is not None:
            view = timeline_dict(hit[1])
        else:
            row = incidents.get(iid)
            if not row or not row.get("incident"):
                return None
            view = dict(row["incident"])
        row = incidents.get(iid) or {}
        view["deliveries"] = row.get("deliveries", [])
        return view

    async def list_incidents(request: web.Request) -> web.Response:
        seen = {inc.id: timeline_dict(inc) for inc in publisher.incidents()}
        for iid, row in list(incidents.items()):
            if iid not in seen and row.get("incident"):
                seen[iid] = row["incident"]
        items = sorted(seen.values(), key=lambda i: (i.get("started_at") or "", i["id"]))
        q = request.query
        if "experiment" in q:
            items = [i for i in items if i["experiment"] == q["experiment"]]
        if "status" in q:
            items = [i for i in items if i["status"] == q["status"]]
        return web.json_response({"incidents": [{k: v for k, v in i.items() if k != "timeline"} for i in items]})

    async def get_incident(request: web.Request) -> web.Response:
        iid = request.match_info["id"]
        view = incident_view(iid)
        if view is None:
            return web.json_response({"error": f"no incident {iid!r}"}, status=404)
        if request.query.get("format") == "md":
            hit = publisher.find(iid)
            if hit is not None:
                return web.Response(text=timeline_markdown(hit[1]), content_type="text/markdown")
        return web.json_response(view)

    async def dashboard(request: web.Request) -> web.Response:
        return web.json_response(experiment_dashboard(request.match_info["experiment"]))

    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics_view)
    r.add_get("/v1/incidents", list_incidents)
    r.add_get("/v1/incidents/{id}", get_incident)
    r.add_get("/v1/experiments/{experiment}/dashboard.json", dashboard)
    add_expectation_routes(r, registrations, token=settings.api_token or None)
