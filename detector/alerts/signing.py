"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Headers: `webhook-id` (the notification id: stable across retries, so receivers
deduplicate), `webhook-timestamp` (unix seconds at the attempt; receivers reject
more than 5 minutes of skew, so every attempt is signed afresh) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
The secret is `whsec_<base64>` and only ever comes from an environment variable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Callable, Mapping

DEFAULT_SECRET_ENV = "DETECTOR_WEBHOOK_SECRET"
_PREFIX = "whsec_"


MIN_SECRET_BYTES = 24


class WeakSecretError(ValueError):
    """A webhook secret that is malformed or too short to sign with."""


def decode_secret(secret: str, name: str = DEFAULT_SECRET_ENV) -> bytes:
    """Key bytes of a `whsec_<base64>` secret (the prefix is optional, as in the reference).

    Refused (at start-up, where signers are built) when it is not base64 or decodes to fewer than
    24 bytes (`whsec_QQ` is a 1-byte key that anyone can brute-force).
    """
    raw = (secret[len(_PREFIX):] if secret.startswith(_PREFIX) else secret).strip()
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)  # unpadded is fine, garbage is not
    except (ValueError, binascii.Error):
        raise WeakSecretError(f"{name} is not a valid webhook secret: expected whsec_<base64>; "
                              f"generate one with: python -c 'from detector.alerts.signing import generate_secret; "
                              f"print(generate_secret())'") from None
    if len(key) < MIN_SECRET_BYTES:
        raise WeakSecretError(f"{name} is too weak: it decodes to {len(key)} bytes, at least {MIN_SECRET_BYTES} are "
                              f"needed; generate one with: python -c 'from detector.alerts.signing import "
                              f"generate_secret; print(generate_secret())'")
    return key


def generate_secret(nbytes: int = 24) -> str:
    """A new random `whsec_` secret (for docs and tests)."""
    return _PREFIX + base64.b64encode(os.urandom(nbytes)).decode()


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for one message."""
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class Signer:
    """Adds Standard Webhooks headers to a request body."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time, name: str = DEFAULT_SECRET_ENV):
        self._key = decode_secret(secret, name)
        self._clock = clock

    def headers(self, msg_id: str, body: bytes) -> dict[str, str]:
        ts = int(self._clock())
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(self._key, msg_id, ts, body),
        }

    @classmethod
    def from_env(cls, env_name: str | None, env: Mapping[str, str]) -> "Signer | None":
        """A signer from the secret in `env_name` (of `Settings.environ`), or None when unset or empty."""
        if not env_name:
            return None
        value = env.get(env_name)
        return cls(value, name=env_name) if value else None
