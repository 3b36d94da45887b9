"""Who may call which route: bearer tokens with scopes, and the access rule every route declares.

Scopes (a token carries any set of them):

    read        status, incidents, registrations and experiments, with user ids left out
    read:users  anything that returns user ids (blast radius, sample ids, allowlists, diffs of them);
                implies read
    write       registrations (PUT, DELETE)
    respond     incident response (ack, resolve)
    ingest      the HTTP collector (POST /v1/assignments)

Tokens come from `DETECTOR_API_TOKENS_FILE` (YAML or JSON: a list of `{name, token | sha256,
scopes}`, or `{tokens: [...]}`) and from `DETECTOR_API_TOKEN`, which is a token named `api-token`
with every scope. A file entry may hold the SHA-256 of its token (hex) instead of the token
itself, so the file need not hold secrets. A presented token is hashed and compared with every
known digest in constant time (`hmac.compare_digest`, no early exit).

Every route declares its rule when it is registered (`add_route(router, method, path, handler,
access=...)`): `public` (anyone: health, readiness, the OpenAPI document), `status` (operational
aggregates: metrics and dashboards), or one scope. `check_routes(app)` refuses to start an app
with a route that declares nothing. Callers without a token get what
`DETECTOR_ANONYMOUS_READ` grants: `none` (public routes only), `status` (default: also the
`status` routes) or `read` (also the `read` scope); `read` (and so `read:users`) reaches the
`status` routes too. Anonymous callers never get `read:users`.

Handlers read `request["principal"]` (`.name`, `.scopes`) and call `has_scope(request,
"read:users")` to decide whether a response may carry user ids; `user_data(request, body, ...)`
does that for them: it leaves the ids out, or, when the caller may see them, writes the audit
record (logger `detector.audit`, INFO, who/what/experiment/count, never the ids) and counts it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

READ, READ_USERS, WRITE, RESPOND, INGEST = "read", "read:users", "write", "respond", "ingest"
SCOPES: tuple[str, ...] = (READ, READ_USERS, WRITE, RESPOND, INGEST)
PUBLIC, STATUS = "public", "status"
ACCESS_RULES: tuple[str, ...] = (PUBLIC, STATUS, *SCOPES)
ANONYMOUS_READ = ("none", "status", "read")
ENV_TOKEN_NAME = "api-token"
MIN_FILE_TOKEN_LENGTH = 16

audit_log = logging.getLogger("detector.audit")
log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AuthConfigError(ValueError):
    """The token configuration cannot be used (raised at start-up, with the reason)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's name and scopes, or `anonymous` with what anonymous reads grant."""

    name: str
    scopes: frozenset[str]
    authenticated: bool = True


@dataclass(frozen=True)
class _Token:
    name: str
    digest: bytes
    scopes: frozenset[str]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def implied(scopes: frozenset[str]) -> frozenset[str]:
    """`read:users` implies `read`."""
    return scopes | {READ} if READ_USERS in scopes else scopes


def allows(rule: str, scopes: frozenset[str], anonymous_status: bool = False) -> bool:
    """Whether a caller holding `scopes` may use a route declared `rule` (`read` reaches `status`)."""
    if rule == PUBLIC:
        return True
    if rule == STATUS:
        return anonymous_status or READ in scopes
    return rule in implied(scopes)


class TokenStore:
    """The known tokens, by SHA-256 digest. Also the console's `Principals` (by_token, by_name)."""

    def __init__(self, tokens: Iterable[_Token] = ()) -> None:
        self._tokens = tuple(tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def names(self) -> list[str]:
        return [t.name for t in self._tokens]

    def authenticate(self, presented: str) -> Principal | None:
        digest = _digest(presented)
        found: _Token | None = None
        for token in self._tokens:  # every digest is compared: the time does not depend on which matched
            if hmac.compare_digest(digest, token.digest):
                found = token
        return None if found is None else Principal(found.name, implied(found.scopes))

    def by_token(self, token: str) -> Principal | None:
        return self.authenticate(token)

    def by_name(self, name: str) -> Principal | None:
        """The principal a console session names (scopes looked up now, so a removed token ends it)."""
        for token in self._tokens:
            if token.name == name:
                return Principal(token.name, implied(token.scopes))
        return None



def _scopes(raw: Any, where: str) -> frozenset[str]:
    if isinstance(raw, str):
        raw = [s for s in raw.replace(",", " ").split() if s]
    if not isinstance(raw, list) or not raw or not all(isinstance(s, str) for s in raw):
        raise AuthConfigError(f"{where}: scopes must be a non-empty list of {', '.join(SCOPES)}")
    unknown = sorted(set(raw) - set(SCOPES))
    if unknown:
        raise AuthConfigError(f"{where}: unknown scope(s) {unknown}; known: {', '.join(SCOPES)}")
    return frozenset(raw)


def parse_tokens(raw: Any, source: str = "tokens file") -> list[_Token]:
    """Token entries from a parsed YAML/JSON document (see the module doc)."""
    if isinstance(raw, Mapping) and "tokens" in raw:
        raw = raw["tokens"]
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise AuthConfigError(f"{source}: expected a list of tokens (or a mapping with `tokens:`)")
    out: list[_Token] = []
    for i, entry in enumerate(raw):
        where = f"{source}: entry {i + 1}"
        if not isinstance(entry, Mapping):
            raise AuthConfigError(f"{where}: expected a mapping with name, token or sha256, scopes")
        unknown = sorted(set(entry) - {"name", "token", "sha256", "scopes"})
        if unknown:
            raise AuthConfigError(f"{where}: unknown key(s) {unknown}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 64 or not name.isprintable():
            raise AuthConfigError(f"{where}: name must be 1-64 printable characters")
        where = f"{source}: token {name!r}"
        token, sha = entry.get("token"), entry.get("sha256")
        if (token is None) == (sha is None):
            raise AuthConfigError(f"{where}: give exactly one of token and sha256")
        if token is not None:
            if not isinstance(token, str) or len(token) < MIN_FILE_TOKEN_LENGTH or any(c.isspace() for c in token):
                raise AuthConfigError(f"{where}: token must be at least {MIN_FILE_TOKEN_LENGTH} characters, no spaces")
            digest = _digest(token)
        else:
            try:
                digest = bytes.fromhex(str(sha))
            except ValueError:
                digest = b""
            if len(digest) != 32:
                raise AuthConfigError(f"{where}: sha256 must be 64 hex digits (sha256sum of the token)")
        if any(t.name == name for t in out):
            raise AuthConfigError(f"{where}: duplicate name")
        out.append(_Token(name, digest, _scopes(entry.get("scopes"), where)))
    return out


def load_tokens(api_token: str = "", tokens_file: str = "") -> TokenStore:
    """The token store from the settings: `DETECTOR_API_TOKEN` (every scope) and the tokens file."""
    tokens: list[_Token] = []
    if tokens_file:
        path = Path(tokens_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise AuthConfigError(f"DETECTOR_API_TOKENS_FILE {tokens_file}: cannot read ({exc.strerror})") from None
        try:
            raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise AuthConfigError(f"DETECTOR_API_TOKENS_FILE {tokens_file}: not valid YAML/JSON ({str(exc)[:200]})") from None
        tokens += parse_tokens(raw, f"DETECTOR_API_TOKENS_FILE {tokens_file}")
    if api_token:
        if any(t.name == ENV_TOKEN_NAME for t in tokens):
            raise AuthConfigError(f"the tokens file may not name a token {ENV_TOKEN_NAME!r} (that is DETECTOR_API_TOKEN)")
        tokens.append(_Token(ENV_TOKEN_NAME, _digest(api_token), frozenset(SCOPES)))
    return TokenStore(tokens)


def anonymous_scopes(anonymous_read: str) -> frozenset[str]:
    """What a caller without a token gets (never `read:users`)."""
    if anonymous_read not in ANONYMOUS_READ:
        raise AuthConfigError(f"DETECTOR_ANONYMOUS_READ must be one of {', '.join(ANONYMOUS_READ)}, got {anonymous_read!r}")
    return frozenset({"none": (), "status": (STATUS,), "read": (STATUS, READ)}[anonymous_read])


# --------------------------------------------------------------------------------- declarations
def declared(handler: Handler, access: str, max_body: int | None = None) -> Handler:
    """`handler` carrying its access rule and body limit (what the middleware enforces)."""

    async def route_handler(request: web.Request) -> web.StreamResponse:
        if PRINCIPAL_KEY not in request:  # served without the middleware stack: fail closed
            raise RuntimeError("route served without detector.web.middleware.install(); refused")
        return await handler(request)

    route_handler.__name__ = getattr(handler, "__name__", "handler")
    route_handler.__doc__ = getattr(handler, "__doc__", None)
    route_handler.access = access  # type: ignore[attr-defined]
    route_handler.max_body = max_body  # type: ignore[attr-defined]
    return route_handler


def add_route(router: web.UrlDispatcher, method: str, path: str, handler: Handler, *, access: str,
              max_body: int | None = None) -> web.AbstractRoute:
    """Register a route with its access rule (`public`, `status` or a scope) and, for bodies, a limit."""
    if access not in ACCESS_RULES:
        raise ValueError(f"route {method} {path}: access must be one of {', '.join(ACCESS_RULES)}, got {access!r}")
    if method == "GET":  # with HEAD, as aiohttp's add_get (load balancers probe with HEAD)
        return router.add_get(path, declared(handler, access, max_body))
    return router.add_route(method, path, declared(handler, access, max_body))


FRAMEWORK_RULES_KEY: web.AppKey[dict] = web.AppKey("detector.auth.framework_rules", dict)


def declare_framework_route(app: web.Application, method: str, path: str, access: str) -> None:
    """The rule of a route a framework adds itself (Faust's index page), by method and path."""
    if access not in ACCESS_RULES:
        raise ValueError(f"route {method} {path}: access must be one of {', '.join(ACCESS_RULES)}, got {access!r}")
    app.setdefault(FRAMEWORK_RULES_KEY, {})[(method, path)] = access


def route_rule(route: web.AbstractRoute, app: web.Application | None = None) -> str | None:
    """The access rule a route declared, or None."""
    rule = getattr(route.handler, "access", None)
    if rule is None and app is not None and route.resource is not None:
        method = "GET" if route.method == "HEAD" else route.method
        rule = app.get(FRAMEWORK_RULES_KEY, {}).get((method, route.resource.canonical))
    return rule


def route_table(app: web.Application) -> list[tuple[str, str, str | None]]:
    """(method, path template, access rule) of every route, HEAD routes left out (they follow GET)."""
    out = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical if route.resource is not None else "?"
        out.append((route.method, path, route_rule(route, app)))
    return out


def check_routes(app: web.Application) -> None:
    """Refuse to start with a route that declares no access rule."""
    missing = [f"{m} {p}" for m, p, rule in route_table(app) if rule is None]
    if missing:
        raise RuntimeError(
            "route(s) without an access rule (register with detector.web.auth.add_route(..., access=...)): "
            + ", ".join(missing))


# ---------------------------------------------------------------------------------------- lookup
PRINCIPAL_KEY: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
ANONYMOUS = Principal("anonymous", frozenset(), authenticated=False)


def principal(request: web.Request) -> Principal:
    return request.get(PRINCIPAL_KEY) or ANONYMOUS


def has_scope(request: web.Request, scope: str) -> bool:
    """True when the caller holds `scope` (anonymous callers hold what DETECTOR_ANONYMOUS_READ grants)."""
    return scope in principal(request).scopes


# ----------------------------------------------------------------------------------------- audit
AUDIT_COUNTER_KEY: web.AppKey[Any] = web.AppKey("detector.auth.user_id_reads", object)


def audit_user_read(request: web.Request, *, what: str, experiment: str | None = None,
                    fields: Iterable[str] = (), count: int | None = None, who: Principal | None = None) -> None:
    """Record that `request`'s caller read user ids: one INFO record on `detector.audit` and a count.

    The record names who (the token's name), what (the view), the experiment, the route and the
    fields or number of ids returned; never the ids themselves.
    """
    who = who or principal(request)  # the console passes its session's principal
    route = getattr(request.match_info.route.resource, "canonical", "?") if request.match_info.route else "?"
    audit_log.info(
        "user ids read by %s: %s of %s", who.name, what, experiment or "(all)",
        extra={"audit": "user_ids_read", "principal": who.name, "what": what, "experiment": experiment,
               "route": route, "method": request.method, "fields": list(fields), "count": count,
               "remote": request.remote},
    )
    counter = request.app.get(AUDIT_COUNTER_KEY) if hasattr(request, "app") else None
    if counter is not None:
        counter.labels(what).inc()


__all__ = [
    "ACCESS_RULES", "ANONYMOUS_READ", "AuthConfigError", "INGEST", "PUBLIC", "Principal", "READ", "READ_USERS",
    "RESPOND", "SCOPES", "STATUS", "TokenStore", "WRITE", "add_route", "anonymous_scopes", "audit_log", "audit_user_read",
    "check_routes", "declare_framework_route", "has_scope", "load_tokens", "parse_tokens", "principal", "route_rule", "route_table",
]
