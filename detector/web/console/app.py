"""Console handlers: thin, reading through the worker's services (see the package docstring)."""

from __future__ import annotations

import hmac
import logging
import time
from pathlib import Path
from typing import Any, Callable, Protocol
from urllib.parse import quote, urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web

from detector.incidents import blast_radius as br
from detector.registration.errors import RegistrationError
from detector.registration.files import yaml_load
from detector.registration.model import parse_registration, registration_to_dict, valid_experiment_key
from detector.registration.risk import assess, diff
from detector.web import fleet_auth
from detector.web.auth import ANONYMOUS, PUBLIC, Principal, add_route, audit_user_read, declare_framework_route
from detector.web.console import session as sess
from detector.web.redact import without_user_ids
from detector.web.console.words import RULE_TITLES, explain, fraction_text, plural, wilson

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
MAX_FORM_BYTES = 1024 * 1024


class Principals(Protocol):
    """Who a token is, and who a session's name is now (scopes are looked up at every request)."""

    def by_token(self, token: str) -> Principal | None: ...

    def by_name(self, name: str) -> Principal | None: ...


class Console:
    """The pages. Collaborators come in through the constructor.

    registrations: RegistrationService (all, get, put, history, observation)
    incidents: IncidentsAPI (all_views, view, acknowledge, resolve_now)
    ingest: has experiments() and state_of(experiment)
    """

    def __init__(self, *, registrations, incidents, ingest, principals: Principals,
                 session_secret: str | None = None, api_token: str | None = None, external_url: str | None = None,
                 grafana_url: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.registrations = registrations
        self.incidents = incidents
        self.ingest = ingest
        self.principals = principals
        self.key = sess.derive_key(session_secret, api_token)
        self.external_url = (external_url or "").rstrip("/") or None
        self.grafana_url = grafana_url
        self.clock = clock

    # ---- sessions ------------------------------------------------------------------------
    def principal(self, request: web.Request) -> Principal | None:
        hop = request.get(fleet_auth.HOP_KEY)
        if hop is not None:  # forwarded by another worker: its session's principal (it kept the cookie)
            return hop.principal if hop.session and hop.principal.authenticated else None
        name = sess.read_session(self.key, request.cookies.get(sess.COOKIE), self.clock())
        return self.principals.by_name(name) if name else None

    def _csrf(self, request: web.Request) -> str:
        """The CSRF token forms of this session must carry ("" without a session)."""
        hop = request.get(fleet_auth.HOP_KEY)
        if hop is not None:
            return hop.csrf
        cookie = request.cookies.get(sess.COOKIE)
        return sess.csrf_token(self.key, cookie) if cookie else ""

    def hop(self, request: web.Request) -> fleet_auth.Hop:
        """What a worker forwarding this page tells the owner instead of sending the session cookie."""
        p = self.principal(request)
        return fleet_auth.Hop(p or ANONYMOUS, session=True, csrf=self._csrf(request) if p else "")

    def _require(self, request: web.Request, scope: str = "read") -> Principal:
        p = self.principal(request)
        if p is None:
            raise web.HTTPSeeOther(f"/login?{urlencode({'next': request.path_qs})}")
        if scope not in p.scopes:
            raise _page_error(403, f"Your token ({p.name}) lacks the '{scope}' scope for this.")
        return p

    async def _form(self, request: web.Request, scope: str) -> tuple[Principal, Any]:
        p = self._require(request, scope)
        if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
            raise _page_error(413, "The form is too large (at most 1 MiB).")
        form = await request.post()
        token = form.get("csrf")
        expected = self._csrf(request)
        if not (expected and isinstance(token, str) and hmac.compare_digest(expected, token)):
            log.warning("console form refused: missing or wrong CSRF token",
                        extra={"path": request.path, "principal": p.name})
            raise _page_error(403, "This form has expired or did not come from this console: reload the page and try again.")
        return p, form

    def _ctx(self, request: web.Request, p: Principal | None, **extra: Any) -> dict[str, Any]:
        return {"principal": p, "csrf": self._csrf(request) if p else "",
                "can": (lambda scope: p is not None and scope in p.scopes), "titles": RULE_TITLES,
                "plural": plural, "request_path": request.path, **extra}

    def _cookie_secure(self, request: web.Request) -> bool:
        return request.secure or (self.external_url or "").startswith("https://") or \
            request.headers.get("X-Forwarded-Proto", "") == "https"

    async def login_page(self, request: web.Request) -> web.Response:
        nonce = sess.new_login_nonce()
        resp = aiohttp_jinja2.render_template("login.html", request, self._ctx(
            request, None, nonce=nonce, next=_safe_next(request.query.get("next")), error=None))
        resp.set_cookie(sess.LOGIN_CSRF_COOKIE, nonce, httponly=True, samesite="Strict",
                        secure=self._cookie_secure(request), max_age=3600, path="/login")
        return resp

    async def login(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > 16 * 1024:
            raise _page_error(413, "The form is too large.")
        form = await request.post()
        nonce = request.cookies.get(sess.LOGIN_CSRF_COOKIE)
        nxt = _safe_next(form.get("next"))
        sent = form.get("nonce")
        if not nonce or not isinstance(sent, str) or not _eq(nonce, sent):
            raise _page_error(403, "This sign-in form has expired: reload the page and try again.")
        token = form.get("token")
        p = self.principals.by_token(token.strip()) if isinstance(token, str) and token.strip() else None
        if p is None:
            log.warning("console sign-in refused: unknown token", extra={"remote": request.remote})
            new_nonce = sess.new_login_nonce()
            resp = aiohttp_jinja2.render_template("login.html", request, self._ctx(
                request, None, nonce=new_nonce, next=nxt, error="That token is not valid."), status=401)
            resp.set_cookie(sess.LOGIN_CSRF_COOKIE, new_nonce, httponly=True, samesite="Strict",
                            secure=self._cookie_secure(request), max_age=3600, path="/login")
            return resp
        log.info("console sign-in", extra={"principal": p.name})
        resp = web.HTTPSeeOther(nxt)
        resp.set_cookie(sess.COOKIE, sess.make_session(self.key, p.name, self.clock()), httponly=True,
                        samesite="Strict", secure=self._cookie_secure(request), max_age=sess.SESSION_TTL_S, path="/")
        resp.del_cookie(sess.LOGIN_CSRF_COOKIE, path="/login")
        raise resp

    async def logout(self, request: web.Request) -> web.Response:
        await self._form(request, "read")
        resp = web.HTTPSeeOther("/login")
        resp.del_cookie(sess.COOKIE, path="/")
        raise resp

    # ---- overview --------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        regs = self.registrations.all()
        names = set(regs) | set(self.ingest.experiments() if self.ingest is not None else ())
        firing: dict[str, list[dict]] = {}
        for v in self.incidents.all_views():
            if v.get("status") == "firing":
                firing.setdefault(v["experiment"], []).append(v)
        rows = []
        for name in names:
            reg = regs.get(name)
            obs = self.registrations.observation(name) or {}
            rules = obs.get("rules") or {}
            incs = firing.get(name, [])
            state = "firing" if incs or any(r.get("state") == "firing" for r in rules.values()) else "ok"
            owner = getattr(reg, "owner", None) if reg is not None else None
            s, n = int(obs.get("enrolled_users") or 0), int(obs.get("eligible_users") or 0)
            rows.append({
                "experiment": name, "registered": reg is not None, "owner": owner or "", "state": state,
                "incidents": incs, "enrolled": s, "eligible": n, "fraction": fraction_text(obs) if n else "–",
                "declared": _declared(reg), "variants": obs.get("variants") or {},
                "rules": {r: v.get("state") for r, v in rules.items()},
                "last_event_at": obs.get("last_event_at"),
            })
        rows.sort(key=lambda r: (r["state"] != "firing", r["experiment"]))
        return rows

    async def overview(self, request: web.Request) -> web.Response:
        p = self._require(request, "read")
        every = self.rows()  # observed once; the owner list and the filters both read it
        owners = sorted({r["owner"] for r in every if r["owner"]})
        owner_q, state_q = request.query.get("owner", "").strip(), request.query.get("state", "").strip()
        rows = [r for r in every if (not owner_q or r["owner"] == owner_q)
                and (state_q not in ("firing", "ok") or r["state"] == state_q)]
        template = "_experiments.html" if request.query.get("partial") == "1" else "overview.html"
        return aiohttp_jinja2.render_template(template, request, self._ctx(
            request, p, rows=rows, owners=owners, owner=request.query.get("owner", ""),
            state=request.query.get("state", "")))

    # ---- incident ------------------------------------------------------------------------
    def _incident(self, request: web.Request, scope: str) -> tuple[Principal, dict[str, Any]]:
        p = self._require(request, scope)
        iid = request.match_info["id"]
        view = self.incidents.view(iid)
        if view is None:
            raise _page_error(404, f"No incident {iid} is known to this worker.")
        return p, view

    async def incident(self, request: web.Request) -> web.Response:
        p, view = self._incident(request, "read")
        users = "read:users" in p.scopes
        blast = view.get("blast_radius") or {}
        sample = list(blast.get("sample_ids") or []) if users else []
        if sample:
            audit_user_read(request, what="incident_sample_ids", experiment=view["experiment"],
                            fields=("blast_radius.sample_ids",), count=len(sample), who=p)
        return aiohttp_jinja2.render_template("incident.html", request, self._ctx(
            request, p, inc=view, sample=sample, show_users=users, count=int(blast.get("count") or 0),
            sentence=_sentence(view), timeline=[_timeline_row(e, users) for e in view.get("timeline") or []],
            grafana=self.grafana_url, dashboard=f"/v1/experiments/{quote(view['experiment'])}/dashboard.json",
            message=request.query.get("done")))

    async def incident_action(self, request: web.Request) -> web.Response:
        iid = request.match_info["id"]
        action = request.match_info["action"]
        p, _form = await self._form(request, "respond")
        from detector.web.registrations_api import HTTPProblem

        try:
            done = await (self.incidents.acknowledge(iid, p.name) if action == "ack"
                          else self.incidents.resolve_now(iid, p.name))
        except HTTPProblem as problem:
            raise _page_error(problem.status, problem.error) from None
        raise web.HTTPSeeOther(f"/incidents/{quote(iid)}?{urlencode({'done': done})}")

    async def incident_csv(self, request: web.Request) -> web.StreamResponse:
        p, view = self._incident(request, "read:users")
        experiment, rule = view["experiment"], view["rule"]
        state = self.ingest.state_of(experiment) if self.ingest is not None else None
        if state is None:
            raise _page_error(404, "The blast radius is held by the worker that owns this experiment.")
        audit_user_read(request, what="blast_radius_csv", experiment=experiment, fields=("user_id",),
                        count=int(getattr(state, "offender_count", 0) or 0), who=p)
        resp = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{_filename(experiment)}-blast-radius.csv"'})
        await resp.prepare(request)
        for chunk in br.csv_chunks(state, self.registrations.get(experiment), rule=rule):
            await resp.write(chunk.encode())
        await resp.write_eof()
        return resp

    # ---- experiment ----------------------------------------------------------------------
    async def experiment(self, request: web.Request) -> web.Response:
        p = self._require(request, "read")
        name = request.match_info["experiment"]
        if not valid_experiment_key(name):
            raise _page_error(400, "That is not a valid experiment key.")
        reg = self.registrations.get(name)
        obs = self.registrations.observation(name)
        if reg is None and obs is None:
            raise _page_error(404, f"Experiment {name} is neither registered nor observed.")
        obs = obs or {}
        users = "read:users" in p.scopes
        declared = registration_to_dict(reg) if reg is not None else None
        if declared and not users and declared.get("population", {}).get("allowlist") is not None:
            al = declared["population"]["allowlist"]
            declared["population"]["allowlist"] = f"({plural(len(al), 'user')}; ids need the read:users scope)"
        elif declared and declared.get("population", {}).get("allowlist"):
            audit_user_read(request, what="registration_allowlist", experiment=name,
                            fields=("population.allowlist",), count=len(declared["population"]["allowlist"]), who=p)
        expected = _expected_view(reg)
        rules = [{"rule": r, "title": RULE_TITLES.get(r, r), "state": v.get("state"),
                  "words": explain(r, v, expected, obs), "statistic": v.get("statistic"),
                  "threshold": v.get("threshold")} for r, v in sorted((obs.get("rules") or {}).items())]
        s, n = int(obs.get("enrolled_users") or 0), int(obs.get("eligible_users") or 0)
        history = self.registrations.history(name) if reg is not None or obs else []
        if not users:
            history = [_redact_history(h) for h in history]
        return aiohttp_jinja2.render_template("experiment.html", request, self._ctx(
            request, p, name=name, reg=reg, declared=declared, obs=obs, rules=rules, history=history,
            fraction=fraction_text(obs) if n else "–", interval=wilson(s, n),
            incidents=[v for v in self.incidents.all_views() if v.get("experiment") == name]))

    # ---- register ------------------------------------------------------------------------
    async def register_page(self, request: web.Request) -> web.Response:
        p = self._require(request, "write")
        text = ""
        name = request.query.get("experiment", "")
        if name and valid_experiment_key(name):
            reg = self.registrations.get(name)
            if reg is not None:
                import yaml

                text = yaml.safe_dump(registration_to_dict(reg), sort_keys=False)
        return aiohttp_jinja2.render_template("register.html", request, self._ctx(
            request, p, text=text, errors=[], risks=[], plan=None, applied=None))

    async def register(self, request: web.Request) -> web.Response:
        p, form = await self._form(request, "write")
        text = form.get("yaml") if isinstance(form.get("yaml"), str) else ""
        confirm = form.get("confirm") == "yes"
        apply = form.get("action") == "apply"
        ctx: dict[str, Any] = dict(text=text, errors=[], risks=[], plan=None, applied=None)
        try:
            raw = yaml_load(text)
            new = parse_registration(raw)
        except RegistrationError as exc:
            ctx["errors"] = exc.to_dicts()
            return aiohttp_jinja2.render_template("register.html", request, self._ctx(request, p, **ctx), status=422)
        except Exception as exc:  # YAML syntax
            ctx["errors"] = [{"field": "(yaml)", "message": str(exc).splitlines()[0][:300]}]
            return aiohttp_jinja2.render_template("register.html", request, self._ctx(request, p, **ctx), status=422)
        old = self.registrations.get(new.experiment)
        changes = diff(old, new)
        risks = assess(old, new, self.registrations.observation(new.experiment), now_ms=int(self.clock() * 1000))
        action = "create" if old is None else ("update" if changes else "unchanged")
        ctx.update(risks=[r.to_dict() for r in risks], plan={"experiment": new.experiment, "action": action,
                                                            "diff": changes, "active_rules": new.active_rules()})
        if apply and action != "unchanged" and (not risks or confirm):
            await self.registrations.put(new, f"{p.name} (console)")
            ctx["applied"] = action
        return aiohttp_jinja2.render_template("register.html", request, self._ctx(request, p, **ctx))


# ---------------------------------------------------------------------------------------- helpers
def _page_error(status: int, message: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 403: web.HTTPForbidden, 404: web.HTTPNotFound, 409: web.HTTPConflict,
           413: web.HTTPRequestEntityTooLarge}.get(status, web.HTTPBadRequest)
    if cls is web.HTTPRequestEntityTooLarge:
        return web.HTTPRequestEntityTooLarge(MAX_FORM_BYTES, 0, text=message)
    return cls(text=message)


def _eq(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


def _safe_next(value: Any) -> str:
    """Only paths on this console: never another host (no open redirect)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 33 for c in value):
        return "/"
    return value


def _filename(experiment: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in experiment)[:100] or "experiment"


def _declared(reg) -> str:
    if reg is None:
        return "not registered"
    parts = []
    if getattr(reg, "allowlist", None) is not None:
        parts.append(f"allowlist of {len(reg.allowlist)}")
    if getattr(reg, "max_users", None) is not None:
        parts.append(f"at most {reg.max_users} users")
    if getattr(reg, "fraction", None) is not None:
        parts.append(f"{100 * reg.fraction:g}% of eligible")
    if getattr(reg, "segments", None):
        parts.append("segments " + ", ".join(f"{k}={sorted(v)}" for k, v in reg.segments.items()))
    return "; ".join(parts) or "registered"


def _expected_view(reg) -> dict[str, Any]:
    if reg is None:
        return {}
    return {"allowlist": sorted(reg.allowlist) if reg.allowlist is not None else None, "max_users": reg.max_users,
            "fraction": reg.fraction, "tolerance": reg.tolerance, "segments": reg.segments,
            "variants": dict(reg.variants) if reg.variants else None, "starts_at": reg.starts_at,
            "ends_at": reg.ends_at}


def _sentence(view: dict[str, Any]) -> str:
    count = int((view.get("blast_radius") or {}).get("count") or 0)
    rule = RULE_TITLES.get(view.get("rule", ""), view.get("rule", ""))
    return (f"{rule} rule of {view.get('experiment')} fired: {plural(count, 'user')} outside the declared "
            f"population since {view.get('first_offending_event_at')}.")


_USER_DETAIL_KEYS = ("sample_ids", "user_ids", "users", "allowlist", "first_user")


def _timeline_row(entry: dict[str, Any], users: bool) -> dict[str, Any]:
    from detector.incidents.views import TITLES, describe

    e = dict(entry)
    if not users:
        # the API's redaction (allowlist diffs of a registration change, sample ids, summaries) ...
        detail, _ = without_user_ids(dict(e.get("detail") or {}))
        # ... and the timeline's own fields that can carry ids
        e["detail"] = {k: v for k, v in detail.items() if k not in _USER_DETAIL_KEYS}
        if e["kind"] == "detection":
            e["detail"].pop("summary", None)
    return {"at": e.get("at"), "title": TITLES.get(e["kind"], e["kind"]), "text": describe(e)}


def _redact_history(h: dict[str, Any]) -> dict[str, Any]:
    out, _ = without_user_ids(dict(h))
    return out


def add_console_routes(app: web.Application, console: Console) -> None:
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
                         context_processors=[])
    env = aiohttp_jinja2.get_env(app)
    env.filters["localtime"] = lambda s: s or "–"
    r = app.router
    # `public` for the API middleware: these pages authenticate by session cookie and check the
    # signed-in token's scopes themselves (`Console._require`).
    for method, path, handler in (
            ("GET", "/login", console.login_page), ("POST", "/login", console.login),
            ("POST", "/logout", console.logout), ("GET", "/", console.overview),
            ("GET", "/incidents/{id}", console.incident),
            ("POST", "/incidents/{id}/{action:ack|resolve}", console.incident_action),
            ("GET", "/incidents/{id}/blast-radius.csv", console.incident_csv),
            ("GET", "/experiments/{experiment}", console.experiment),
            ("GET", "/register", console.register_page), ("POST", "/register", console.register)):
        add_route(r, method, path, handler, access=PUBLIC, max_body=MAX_FORM_BYTES)
    static = r.add_static("/static/", HERE / "static", show_index=False, follow_symlinks=False)
    declare_framework_route(app, "GET", static.canonical, PUBLIC)
