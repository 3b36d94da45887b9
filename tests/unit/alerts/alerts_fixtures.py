"""Helpers for the alerting tests: an engine-shaped Finding and a recording local HTTP receiver.

A uniquely named module (not `conftest`) so `from alerts_fixtures import finding` cannot
pick up another package's conftest.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass(frozen=True)
class Finding:
    """The engine's Finding shape (duck-typed; the lifecycle never imports the engine)."""

    experiment: str
    rule: str
    severity: str
    observed: dict
    expected: dict
    first_offending_event_at: int
    detected_at: int
    blast_radius: int
    sample_ids: tuple[str, ...]
    statistic: float | None
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def finding(experiment="subs-mvp-crm-qa", rule="allowlist_breach", *, count=1, first_at=1_000, detected_at=None,
            severity="critical", samples=None) -> Finding:
    return Finding(
        experiment=experiment, rule=rule, severity=severity,
        observed={"out_of_target_users": count}, expected={"allowlist_size": 5},
        first_offending_event_at=first_at, detected_at=detected_at if detected_at is not None else first_at + 50,
        blast_radius=count, sample_ids=tuple(samples or (f"user-{i}" for i in range(min(count, 10)))),
        statistic=None, summary=f"{count} users enrolled outside the allowlist",
    )


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests and answers from a script."""

    server: TestServer | None = None
    requests: list[dict] = field(default_factory=list)
    script: list[Any] = field(default_factory=list)  # per request: int status, (status, headers), or "sleep:<s>"
    default: int = 200

    def url(self, path: str = "/hook") -> str:
        return str(self.server.make_url(path))

    def at(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        entry = {"path": request.path, "headers": dict(request.headers), "body": body, "at": time.monotonic()}
        self.requests.append(entry)
        action = self.script.pop(0) if self.script else self.default
        if isinstance(action, str) and action.startswith("sleep:"):
            await asyncio.sleep(float(action.split(":", 1)[1]))
            action = 200
        status, headers = action if isinstance(action, tuple) else (action, {})
        entry["status"] = status
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else "error")
