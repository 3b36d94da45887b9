"""HTTP for flag configurations: the push webhook and the judgement view. Handlers stay thin.

`POST /v1/flag-sources/{source}/webhook` (scope `write`): a GrowthBook SDK webhook (Standard
body with `data.payload`, or the raw SDK payload), a flagd document or an Unleash client
features response is applied at once; any other body (an Unleash webhook addon event,
GrowthBook's "no SDK payload" body) makes the watcher poll the source now. 202 either way.
`GET /v1/flags` (scope `read`): each source's health and each registration's judgement (no
user ids: user lists are counted, values of personal attributes are not shown).
"""

from __future__ import annotations

from aiohttp import web

from detector.web.auth import READ, WRITE, add_route
from detector.web.problems import read_body


def add_routes(router: web.UrlDispatcher, watcher) -> None:
    """The routes, served whether or not flag sources are configured (`watcher` None: none are)."""

    async def webhook(request: web.Request) -> web.Response:
        body = await read_body(request)
        if watcher is None:
            return web.json_response({"status": "no flag sources are configured (DETECTOR_FLAG_SOURCES)"}, status=404)
        status, message = watcher.accept(request.match_info["source"], body)
        return web.json_response({"status": message}, status=status)

    async def flags(request: web.Request) -> web.Response:
        if watcher is None:
            return web.json_response({"sources": {}, "experiments": {}})
        return web.json_response({"sources": watcher.sources_view(), "experiments": watcher.verdicts})

    add_route(router, "POST", "/v1/flag-sources/{source}/webhook", webhook, access=WRITE)
    add_route(router, "GET", "/v1/flags", flags, access=READ)
