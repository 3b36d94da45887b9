"""The one middleware stack every route goes through: errors -> auth -> body size.

- **errors**: every failure becomes a JSON error body (`detector.web.problems`) without
  internals. A refused request is logged once, at WARNING for malformed input and refused
  credentials (400, 401, 403, 413, 415, 422) and at DEBUG otherwise, never with a traceback; an
  unexpected exception is logged at ERROR with its traceback and answered 500
  `{"error": "internal error"}`. Malformed HTTP that never reaches a route (bad request line,
  bad headers) is logged by aiohttp; `MalformedRequestFilter` turns those records into one
  WARNING line without a traceback.
- **auth**: the route's declared rule (`detector.web.auth`) against the caller's bearer token,
  before anything reads the body. Sets `request["principal"]`. A request forwarded by another
  worker of the fleet carries no token but a signed hop (`detector.web.fleet_auth`): its principal
  is the one the sender authenticated; a forwarding header without a valid signature is 401. No token known to the worker at
  all: 503 for any route anonymous callers may not use (the operator's configuration is wrong,
  not the caller); missing or wrong token: 401; a token without the route's scope: 403.
- **size**: a body announced larger than the route's limit (`add_route(..., max_body=...)`,
  default 1 MiB) is refused with 413 before anything reads it; `read_body` enforces the same
  limit on chunked bodies.

    app = web.Application()
    install(app, tokens=load_tokens(...), anonymous_read="status", registry=metrics.registry)
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry, Counter

from detector.web import auth, fleet_auth
from detector.web.auth import PUBLIC, STATUS, Principal, TokenStore
from detector.web.problems import MAX_BODY_BYTES, HTTPProblem, field_problem, route_body_limit

log = logging.getLogger("detector.web")

REFUSED_COUNTER_KEY: web.AppKey[Any] = web.AppKey("detector.auth.refused", object)
_WARN_STATUSES = frozenset({400, 401, 403, 413, 414, 415, 422, 431})
_REALM = 'Bearer realm="detector"'


class _Config:
    def __init__(self, tokens: TokenStore, anonymous: frozenset[str], max_body: int) -> None:
        self.tokens, self.anonymous, self.max_body = tokens, anonymous, max_body


CONFIG_KEY: web.AppKey[_Config] = web.AppKey("detector.auth.config", _Config)


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    return getattr(resource, "canonical", None) or "unmatched"


def _refused(request: web.Request, status: int, error: str) -> None:
    counter = request.app.get(REFUSED_COUNTER_KEY)
    if counter is not None:
        counter.labels(str(status)).inc()
    level = logging.WARNING if status in _WARN_STATUSES else logging.DEBUG
    who = request.get(auth.PRINCIPAL_KEY)
    log.log(level, "refused %s %s: %d %s", request.method, _route_name(request), status, error[:200],
            extra={"status": status, "route": _route_name(request), "remote": request.remote,
                   "principal": who.name if who else None})


@web.middleware
async def errors_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HTTPProblem as problem:
        _refused(request, problem.status, problem.error)
        return problem.response()
    except web.HTTPException as exc:
        if exc.status < 400 or (request.match_info.http_exception is None and not request.path.startswith("/v1/")):
            raise  # redirects, and the console's own HTML error pages
        reason = {404: "not found", 405: "method not allowed", 413: "request body too large"}.get(exc.status, exc.reason)
        answer = HTTPProblem(exc.status, reason, [{"field": "(request)", "message": reason}])
        answer.headers.update({k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")})
        _refused(request, exc.status, reason)
        return answer.response()
    except (ConnectionResetError, web.HTTPClientError):
        raise
    except Exception:
        log.exception("internal error on %s %s", request.method, _route_name(request))
        return HTTPProblem(500, "internal error", [{"field": "(server)", "message": "see the worker's log"}]).response()


@web.middleware
async def size_middleware(request: web.Request, handler) -> web.StreamResponse:
    if request.match_info.http_exception is None and request.content_length is not None:
        config: _Config = request.app[CONFIG_KEY]
        limit = route_body_limit(request, config.max_body)
        if request.content_length > limit:
            raise field_problem(413, "request body too large", "(body)",
                                f"must be at most {limit} bytes ({limit // 1024} KiB)")
    return await handler(request)


def _unauthenticated(error: str, message: str, challenge: str = _REALM) -> HTTPProblem:
    problem = field_problem(401, error, "Authorization", message)
    problem.headers["WWW-Authenticate"] = challenge
    return problem


def _caller(request: web.Request, config: _Config) -> Principal:
    header = request.headers.get("Authorization")
    if header is None:
        return Principal("anonymous", config.anonymous - {STATUS}, authenticated=False)
    scheme, _, presented = header.partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise _unauthenticated("authentication required", "send 'Authorization: Bearer <token>'")
    found = config.tokens.authenticate(presented)
    if found is None:
        raise _unauthenticated("invalid token", "the bearer token is not valid", _REALM + ', error="invalid_token"')
    return found


@web.middleware
async def auth_middleware(request: web.Request, handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        return await handler(request)  # 404/405: nothing to protect
    rule = auth.route_rule(request.match_info.route, request.app)
    if rule is None:  # check_routes refuses this at start-up; fail closed all the same
        raise field_problem(403, "route has no access rule", "(route)", "refused")
    hop = None
    if fleet_auth.is_hop(request):  # from another worker of the fleet: its signature, not a token
        try:
            hop = await fleet_auth.verify_request(request, time.time())
        except fleet_auth.FleetAuthError as exc:
            raise _unauthenticated("invalid fleet signature", str(exc)) from None
    if rule == PUBLIC:
        if hop is not None:  # the console's pages: the hop's principal is the sender's session's
            request[auth.PRINCIPAL_KEY] = hop.principal
            return await handler(request)
        request[auth.PRINCIPAL_KEY] = auth.ANONYMOUS
        return await handler(request)
    config: _Config = request.app[CONFIG_KEY]
    anonymous_status = STATUS in config.anonymous
    if not len(config.tokens) and not auth.allows(rule, config.anonymous, anonymous_status):
        raise field_problem(503, "this route is disabled on this worker: no API token is configured "
                                 "(set DETECTOR_API_TOKEN or DETECTOR_API_TOKENS_FILE)", "Authorization",
                            "set DETECTOR_API_TOKEN or DETECTOR_API_TOKENS_FILE on the worker to enable it")
    caller = hop.principal if hop is not None else _caller(request, config)
    request[auth.PRINCIPAL_KEY] = caller
    if not auth.allows(rule, caller.scopes, anonymous_status and not caller.authenticated):
        if caller.authenticated:
            raise field_problem(403, f"token {caller.name!r} lacks the scope {rule!r}", "Authorization",
                                f"this route needs a token with the {rule!r} scope")
        raise _unauthenticated("authentication required",
                               f"send 'Authorization: Bearer <token>' with the {rule!r} scope")
    return await handler(request)


class MalformedRequestFilter(logging.Filter):
    """aiohttp's 'Error handling request' for malformed HTTP: one WARNING line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "malformed HTTP request refused: %s %s", (
                getattr(exc, "code", 400), str(getattr(exc, "message", "") or type(exc).__name__)[:200])
            record.exc_info, record.exc_text = None, None
        return True


_FILTER = MalformedRequestFilter()


def install(app: web.Application, *, tokens: TokenStore, anonymous_read: str = "status",
            registry: CollectorRegistry | None = None, max_body: int = MAX_BODY_BYTES) -> None:
    """Put the stack on `app` (after any middleware already there, e.g. metrics) and check its routes
    at start-up. Raises `auth.AuthConfigError` for an unusable configuration."""
    app[CONFIG_KEY] = _Config(tokens, auth.anonymous_scopes(anonymous_read), max_body)
    if registry is not None:
        app[REFUSED_COUNTER_KEY] = Counter(
            "exposure_detector_http_requests_refused_total",
            "HTTP requests refused before or by a handler (malformed, too large, unauthenticated, "
            "forbidden), by status.", ["status"], registry=registry)
        app[auth.AUDIT_COUNTER_KEY] = Counter(
            "exposure_detector_user_id_reads_total",
            "Responses that returned user ids (each also an audit log record), by view.", ["what"],
            registry=registry)
    app.middlewares.extend([errors_middleware, auth_middleware, size_middleware])

    async def _check(app: web.Application) -> None:
        auth.check_routes(app)

    app.on_startup.append(_check)
    server_log = logging.getLogger("aiohttp.server")
    if _FILTER not in server_log.filters:
        server_log.addFilter(_FILTER)


def secure_app(*, tokens: TokenStore | None = None, api_token: str = "", anonymous_read: str = "status",
               **options: Any) -> web.Application:
    """A new `web.Application` with the stack installed (tests and tools)."""
    app = web.Application(**options)
    install(app, tokens=tokens if tokens is not None else auth.load_tokens(api_token), anonymous_read=anonymous_read)
    return app
