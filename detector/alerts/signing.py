"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Headers: `webhook-id` (the notification id: stable across retries, so receivers
deduplicate), `webhook-timestamp` (unix seconds at the attempt; receivers reject
more than 5 minutes of skew, so every attempt is signed afresh) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
The secret is `whsec_<base64>` and only ever comes from an environment variable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Callable, Mapping

DEFAULT_SECRET_ENV = "DETECTOR_WEBHOOK_SECRET"
_PREFIX = "whsec_"


def decode_secret(secret: str) -> bytes:
    """Key bytes of a `whsec_<base64>` secret (the prefix is optional, as in the reference)."""
    raw = secret[len(_PREFIX):] if secret.startswith(_PREFIX) else secret
    key = base64.b64decode(raw + "==")  # tolerate unpadded base64, as the reference does
    if not key:
        raise ValueError("webhook secret is empty")
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

    def __init__(self, secret: str, clock: Callable[[], float] = time.time):
        self._key = decode_secret(secret)
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
        return cls(value) if value else None
