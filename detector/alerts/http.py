"""The shape every sink shares: build an HTTP request, classify the response.

As in Alertmanager's `notify/` packages, a sink knows only its own wire format:
it turns a `Notification` into an `HttpRequest` and says whether a response
status means delivered (`ok`), try again (`retry`) or give up (`fail`).
Signing, auth headers, timeouts and retries are delivery's job, the same for all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import orjson

from .notification import Notification
from .signing import Signer

Verdict = Literal["ok", "retry", "fail"]


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def json_request(url: str, payload: Any, method: str = "POST") -> HttpRequest:
    return HttpRequest(method, url, {"Content-Type": "application/json"}, orjson.dumps(payload))


def default_classify(status: int, headers: Mapping[str, str] | None = None) -> Verdict:
    """2xx ok; 408, 429 and 5xx retry; any other status is permanent."""
    if 200 <= status < 300:
        return "ok"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "fail"


@runtime_checkable
class Sink(Protocol):
    """What delivery and routing need from a sink instance."""

    type: ClassVar[str]
    name: str
    signer: Signer | None
    bearer_token: str | None
    wants_refresh: bool

    def build_request(self, notification: Notification) -> HttpRequest: ...

    def classify(self, status: int, headers: Mapping[str, str]) -> Verdict: ...


@dataclass
class BaseSink:
    """Common fields and defaults; concrete sinks override `build_request` (and maybe `classify`)."""

    type: ClassVar[str] = "base"
    wants_refresh: ClassVar[bool] = False  # only sinks that expire alerts want keep-alives
    default_secret_env: ClassVar[str | None] = None  # signed by default only if set

    name: str
    url: str
    signer: Signer | None = None
    bearer_token: str | None = None
    external_url: str | None = None  # detector's base URL, for links back to the incident
    options: dict[str, Any] = field(default_factory=dict)

    def build_request(self, notification: Notification) -> HttpRequest:  # pragma: no cover
        raise NotImplementedError

    def classify(self, status: int, headers: Mapping[str, str]) -> Verdict:
        return default_classify(status, headers)

    def incident_url(self, notification: Notification) -> str:
        """The incident's console page (people follow links in pages), when the base URL is known."""
        base = (self.external_url or "").rstrip("/")
        return f"{base}/incidents/{notification.incident_id}" if base else ""

    def incident_api_url(self, notification: Notification) -> str:
        """The incident as JSON (`GET /v1/incidents/{id}`), for tools."""
        base = (self.external_url or "").rstrip("/")
        return f"{base}/v1/incidents/{notification.incident_id}" if base else ""

    def accepts(self, notification: Notification) -> bool:
        """Keep-alive refreshes only go to sinks that want them."""
        return notification.kind != "refresh" or self.wants_refresh


class SinkUnavailable(Exception):
    """A configured sink cannot be built (e.g. its URL's environment variable is unset)."""


def _env_value(spec: Mapping[str, Any], key: str, env: Mapping[str, str]) -> str | None:
    """`key` literally, or from the environment variable named by `key_env`."""
    env_name = spec.get(f"{key}_env")
    if env_name:
        return env.get(str(env_name)) or None
    value = spec.get(key)
    return str(value) if value else None


def sink_from_spec(cls: type[BaseSink], name: str, spec: Mapping[str, Any], env: Mapping[str, str],
                   external_url: str | None = None, default_url: str | None = None) -> BaseSink:
    """Build a sink from its YAML entry; secrets only from environment variables.

    Keys: `url` or `url_env`; `secret_env` (Standard Webhooks secret, default per
    sink type); `token_env` (Authorization: Bearer); everything else -> `options`.
    """
    if spec.get("secret") or spec.get("token"):
        raise ValueError(f"sink {name!r}: secrets must come from environment variables (secret_env, token_env)")
    url = _env_value(spec, "url", env) or default_url
    if not url:
        where = f"environment variable {spec['url_env']}" if spec.get("url_env") else "`url`"
        raise SinkUnavailable(f"sink {name!r}: no URL ({where} is unset)")
    secret_env = spec.get("secret_env", cls.default_secret_env)
    token_env = spec.get("token_env")
    signer = Signer.from_env(secret_env, env) if secret_env else None
    token = env.get(str(token_env)) if token_env else None
    reserved = {"type", "url", "url_env", "secret_env", "token_env"}
    options = {k: v for k, v in spec.items() if k not in reserved}
    return cls(name=name, url=url, signer=signer, bearer_token=token or None, external_url=external_url, options=options)
