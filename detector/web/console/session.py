"""Console sessions and CSRF tokens: signed, stateless, the same on every worker of a fleet.

A session cookie names the principal (the token's name), not the token: the scopes are looked up
again at every request, so a token removed from the configuration stops working at once.

    cookie  = "v1." + b64(name) + "." + expires (unix s) + "." + b64(HMAC-SHA256(key, "v1|name|expires"))
    csrf    = b64(HMAC-SHA256(key, "csrf|" + cookie))[:32]      (synchroniser token, per session)

The key comes from `DETECTOR_SESSION_SECRET` when set, else it is derived from
`DETECTOR_API_TOKEN` (never from the tokens file, whose entries may be published digests), else it
is random per process. Pure functions: no clock inside (`now` is passed in).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

COOKIE = "detector_session"
LOGIN_CSRF_COOKIE = "detector_login_csrf"
SESSION_TTL_S = 12 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive_key(secret: str | None, api_token: str | None) -> bytes:
    """The signing key: `DETECTOR_SESSION_SECRET`; else derived from `DETECTOR_API_TOKEN` (a secret
    every worker of a fleet shares); else random for this process (sessions then hold only on the
    worker that issued them). Never from the tokens file: its entries may be public digests."""
    if secret:
        return hashlib.sha256(b"detector-console|" + secret.encode()).digest()
    if api_token:
        return hmac.new(api_token.encode(), b"detector-console-session-key", hashlib.sha256).digest()
    return secrets.token_bytes(32)


def _sig(key: bytes, name_b64: str, expires: int) -> str:
    return _b64(hmac.new(key, f"v1|{name_b64}|{expires}".encode(), hashlib.sha256).digest())


def make_session(key: bytes, name: str, now: float, ttl_s: int = SESSION_TTL_S) -> str:
    name_b64 = _b64(name.encode("utf-8"))
    expires = int(now) + ttl_s
    return f"v1.{name_b64}.{expires}.{_sig(key, name_b64, expires)}"


def read_session(key: bytes, cookie: str | None, now: float) -> str | None:
    """The principal's name in a valid, unexpired cookie; None otherwise."""
    if not cookie or len(cookie) > 1024:
        return None
    parts = cookie.split(".")
    if len(parts) != 4 or parts[0] != "v1":
        return None
    _, name_b64, expires_s, sig = parts
    if not expires_s.isdigit() or int(expires_s) < now:
        return None
    if not hmac.compare_digest(sig, _sig(key, name_b64, int(expires_s))):
        return None
    try:
        return _unb64(name_b64).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def csrf_token(key: bytes, cookie: str) -> str:
    return _b64(hmac.new(key, b"csrf|" + cookie.encode(), hashlib.sha256).digest())[:32]


def csrf_ok(key: bytes, cookie: str | None, presented: str | None) -> bool:
    if not cookie or not presented:
        return False
    return hmac.compare_digest(csrf_token(key, cookie), presented)


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)
