"""HTTP for flag configurations: the push webhook and the judgement view. Handlers stay thin.

`POST /v1/flag-sources/{source}/webhook` (needs a write token): a GrowthBook SDK webhook
(Standard body with `data.payload`, or the raw SDK payload), a flagd document or an Unleash
client features response is applied at once; any other body (an Unleash webhook addon event,
GrowthBook's "no SDK payload" body) makes the watcher poll the source now. 202 either way.
`GET /v1/flags`: each source's health and each registration's judgement (no user ids).
"""

from __future__ import annotations

from aiohttp import web

from detector.web.expectations_api import HTTPProblem, _Auth, read_body


def add_routes(router: web.UrlDispatcher, watcher, token: str | None) -> None:
    auth = _Auth(token, from_env=False)

    async def webhook(request: web.Request) -> web.Response:
        try:  # the shared write-scope check of the API (detector.web), until its auth module lands
            auth.check(request)
            body = await read_body(request)
        except HTTPProblem as problem:
            return problem.response()
        status, message = watcher.accept(request.match_info["source"], body)
        return web.json_response({"status": message}, status=status)

    async def flags(request: web.Request) -> web.Response:
        return web.json_response({"sources": watcher.sources_view(), "experiments": watcher.verdicts})

    router.add_post("/v1/flag-sources/{source}/webhook", webhook)
    router.add_get("/v1/flags", flags)
