"""Worker-to-worker hops of the fleet, authenticated with the fleet secret (`DETECTOR_FLEET_SECRET`).

A worker that forwards a request to the owner of an experiment (detector/web/fleet.py) sends
neither the caller's `Authorization` nor its `Cookie`: it sends who the caller is (the principal
it authenticated: name, scopes, whether authenticated, and for console pages the session's
expected CSRF token), signed with HMAC-SHA256 over the method, the path and query, the forwarded
partitions, a timestamp, the claims and the body's SHA-256. The owner verifies the signature and
that the timestamp is within `MAX_AGE_S` of its clock, then serves the request as that principal.
A request carrying the forwarding header without a valid signature is refused (401), so an outside
caller cannot make a worker answer "locally" for a subset of partitions.

The advertised URL in the consumer-group metadata is signed the same way (`sign_url`), so a member
that joins the group without the secret is never forwarded to.

Pure functions: no clock, no I/O; callers pass `now`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

import orjson
import yarl
from aiohttp import web

from detector.web.auth import Principal
from detector.web.problems import BODY_KEY, route_body_limit

FORWARDED = "X-Detector-Forwarded-Partitions"  # the partitions the sender believes the owner holds
CLAIMS = "X-Detector-Fleet-Claims"
SIGNATURE = "X-Detector-Fleet-Signature"
FLEET_HEADERS = (FORWARDED, CLAIMS, SIGNATURE)
MAX_AGE_S = 30.0
SETTING = "DETECTOR_FLEET_SECRET"
URL_MAC_SEP = "\n"


class FleetAuthError(ValueError):
    """A forwarded request whose signature, freshness or claims do not hold (answered 401)."""


@dataclass(frozen=True)
class Hop:
    """What a verified hop says about its caller."""

    principal: Principal
    session: bool = False  # the principal is a console session's (the owner's console uses it)
    csrf: str = ""  # the session's expected CSRF token (console forms), "" when none


def body_digest(body: bytes | None) -> str:
    return hashlib.sha256(body or b"").hexdigest()


def _mac(secret: str, *parts: str) -> str:
    msg = "\n".join(parts).encode("utf-8", "surrogatepass")
    return hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def sign(secret: str, *, method: str, path_qs: str, partitions: str, hop: Hop, body: bytes | None,
         now: float) -> dict[str, str]:
    """The headers of a forwarded request (the forwarding header included)."""
    p = hop.principal
    claims = {"p": p.name, "s": sorted(p.scopes), "a": p.authenticated, "ses": hop.session, "c": hop.csrf,
              "t": round(now, 3), "b": body_digest(body)}
    encoded = base64.urlsafe_b64encode(orjson.dumps(claims)).decode("ascii")
    return {FORWARDED: partitions, CLAIMS: encoded,
            SIGNATURE: _mac(secret, method.upper(), path_qs, partitions, encoded)}


def verify(secret: str, *, method: str, path_qs: str, headers, now: float, body: bytes | None = None,
           max_age_s: float = MAX_AGE_S) -> Hop:
    """The hop's caller, or FleetAuthError. `body`: checked against the signed digest when given."""
    if not secret:
        raise FleetAuthError(f"this worker has no fleet secret ({SETTING}): it accepts no forwarded request")
    partitions, encoded, presented = (headers.get(h) for h in FLEET_HEADERS)
    if partitions is None or not encoded or not presented:
        raise FleetAuthError("a forwarded request must carry the fleet's signature")
    expected = _mac(secret, method.upper(), path_qs, partitions, encoded)
    if not hmac.compare_digest(expected, presented):
        raise FleetAuthError("the fleet signature does not match (another secret, or the request was altered)")
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(encoded.encode("ascii")))
        ts, name, scopes = float(claims["t"]), str(claims["p"]), frozenset(str(s) for s in claims["s"])
        authenticated, session, csrf = bool(claims["a"]), bool(claims.get("ses")), str(claims.get("c") or "")
        digest = str(claims["b"])
    except (ValueError, KeyError, TypeError):
        raise FleetAuthError("the fleet claims are unreadable") from None
    if abs(now - ts) > max_age_s:
        raise FleetAuthError(f"the forwarded request is stale ({now - ts:.0f} s; at most {max_age_s:.0f} s)")
    if body is not None and not hmac.compare_digest(body_digest(body), digest):
        raise FleetAuthError("the forwarded body does not match its signature")
    return Hop(Principal(name, scopes, authenticated=authenticated), session=session, csrf=csrf)


def sign_url(secret: str, url: str) -> str:
    """The consumer-group `user_data` of a worker: its URL, and with a secret, the URL's MAC."""
    return f"{url}{URL_MAC_SEP}{_mac(secret, 'advertised-url', url)}" if secret else url


def verified_url(secret: str, user_data: str) -> str:
    """The URL a member advertised, or "" when it is not signed with `secret` (never forwarded to)."""
    url, _, mac = user_data.partition(URL_MAC_SEP)
    if not secret:
        return url
    return url if mac and hmac.compare_digest(mac, _mac(secret, "advertised-url", url)) else ""


def parse_peers(raw: str) -> tuple[list[ipaddress.IPv4Network | ipaddress.IPv6Network], set[str]]:
    """`DETECTOR_FLEET_PEERS`: comma-separated CIDRs (10.0.0.0/8) and host:port entries; ValueError if bad."""
    nets, hosts = [], set()
    for item in (i.strip() for i in raw.split(",")):
        if not item:
            continue
        if "/" in item:
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"DETECTOR_FLEET_PEERS: {item!r} is not a CIDR") from None
        elif item.rpartition(":")[2].isdigit():
            hosts.add(item.lower())
        else:
            raise ValueError(f"DETECTOR_FLEET_PEERS: {item!r} is neither a CIDR nor host:port")
    return nets, hosts


def peer_allowed(url: str, peers: tuple[list, set[str]]) -> bool:
    """Whether a member's advertised URL is one of the peers (no peers configured: any URL)."""
    nets, hosts = peers
    if not nets and not hosts:
        return True
    u = yarl.URL(url)
    if u.host is None or u.port is None:
        return False
    host = u.host.lower()
    if f"{host}:{u.port}" in hosts or f"[{host}]:{u.port}" in hosts:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in n for n in nets)


# Where the web app keeps the secret (set by Fleet.install) and a request its verified hop.
SECRET_KEY: web.AppKey[str] = web.AppKey("detector.fleet.secret", str)
HOP_KEY: web.RequestKey[Hop] = web.RequestKey("detector.fleet.hop", Hop)


def is_hop(request: web.Request) -> bool:
    """The request claims to come from another worker (carries any of the fleet's headers)."""
    return any(h in request.headers for h in FLEET_HEADERS)


async def verify_request(request: web.Request, now: float) -> Hop:
    """Verify a request's hop (signature, freshness, then its body) and keep it on the request."""
    secret = request.app.get(SECRET_KEY, "")
    hop = verify(secret, method=request.method, path_qs=request.rel_url.path_qs, headers=request.headers, now=now)
    limit = route_body_limit(request)
    if request.content_length is not None and request.content_length > limit:
        raise FleetAuthError(f"the forwarded body is larger than this route's {limit} bytes")
    # aiohttp keeps what read() read (request.post() reuses it); read_body() returns BODY_KEY's
    body = request[BODY_KEY] = await request.read() if request.can_read_body else b""
    verify(secret, method=request.method, path_qs=request.rel_url.path_qs, headers=request.headers, now=now,
           body=body)
    request[HOP_KEY] = hop
    return hop
