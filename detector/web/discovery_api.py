"""`GET /v1/discovery`: what the detector has observed of experiments, for turning them into registrations.

    GET /v1/discovery               unregistered experiments held by this worker (JSON)
    GET /v1/discovery?all=true      every experiment, registered or not
    GET /v1/discovery?format=csv    the same as CSV (a header row; formula-like cells quoted)

Access: the `read` scope (detector/web/auth.py). No user ids in the answer: counts, fractions,
variants and attribute values only, so `read:users` is not needed.
The logic is `detector.discovery` (shared with `detector discover` and the digest).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from detector import discovery
from detector.web.auth import READ, add_route


def add_routes(router: web.UrlDispatcher, *, exposures: Callable[..., list] | None) -> None:
    """`exposures(include_registered=...)` lists `discovery.Exposure`s; None: this server holds no engine state."""

    async def list_discovery(request: web.Request) -> web.Response:
        if exposures is None:
            return web.json_response({"error": "discovery is served by the detector worker"}, status=503)
        include_all = request.query.get("all", "").lower() in ("1", "true", "yes")
        fmt = request.query.get("format", "json").lower()
        if fmt not in ("json", "csv"):
            return web.json_response({"error": f"unknown format {fmt!r}: json or csv"}, status=400)
        rows = exposures(include_registered=include_all)
        if fmt == "csv":
            return web.Response(text=discovery.to_csv(rows), content_type="text/csv",
                                headers={"Content-Disposition": 'attachment; filename="discovery.csv"'})
        return web.json_response({"experiments": [e.to_dict() for e in rows], "count": len(rows),
                                  "unregistered_only": not include_all})

    add_route(router, "GET", "/v1/discovery", list_discovery, access=READ)
