"""Console sessions: signed cookies whose key nobody can compute from public material."""

from __future__ import annotations

import hashlib

from detector.web.console import session as sess

NOW = 1_800_000_000.0


def test_a_session_round_trips_and_expires():
    key = sess.derive_key("a-session-secret-of-some-length", None)
    cookie = sess.make_session(key, "on-call", NOW, ttl_s=60)
    assert sess.read_session(key, cookie, NOW + 59) == "on-call"
    assert sess.read_session(key, cookie, NOW + 61) is None
    v, _name, expires, sig = cookie.split(".")
    forged = ".".join((v, sess._b64(b"admin"), expires, sig))  # another name under the same signature
    assert sess.read_session(key, forged, NOW) is None
    assert sess.read_session(key, ".".join((v, _name, str(int(expires) + 3600), sig)), NOW) is None
    assert sess.read_session(sess.derive_key("another-secret-entirely", None), cookie, NOW) is None


def test_the_key_is_not_derivable_from_the_tokens_file():
    """Token files may hold only SHA-256 digests (public): the key must not come from them."""
    api_token = "the-env-api-token-0123456789"
    key = sess.derive_key(None, api_token)
    digests = [hashlib.sha256(t.encode()).hexdigest() for t in (api_token, "file-token-0123456789")]
    for guess in (sess.derive_key(None, d) for d in digests):
        assert guess != key
    assert sess.derive_key(None, api_token) == key  # every worker with the same token agrees
    # no secret and no token: random per process, never a constant
    assert sess.derive_key(None, None) != sess.derive_key(None, None)


def test_csrf_token_is_bound_to_the_session():
    key = sess.derive_key("a-session-secret-of-some-length", None)
    a, b = sess.make_session(key, "a", NOW), sess.make_session(key, "b", NOW)
    assert sess.csrf_ok(key, a, sess.csrf_token(key, a))
    assert not sess.csrf_ok(key, a, sess.csrf_token(key, b))
    assert not sess.csrf_ok(key, a, None) and not sess.csrf_ok(key, None, "x")
