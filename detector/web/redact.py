"""User ids in API responses: left out without `read:users`, audited with it.

User ids reach responses in a few known shapes, all handled here (one place, so a new view that
embeds one of them is covered): a registration's `population.allowlist` (also inside
`declaration` and `expectation`), the diff of that field in a write result or the history
(`old`, `new`, `added`, `removed`), and a blast radius's `sample_ids` / `sample_user_ids`, and the
first offender an allowlist summary names.
Without `read:users` they are replaced by their counts and the body says what was left out
(`"redacted": [...]`); with it, the read is audited (`detector.web.auth.audit_user_read`).
The blast-radius routes return nothing but user ids and require `read:users` outright.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from detector.web.auth import READ_USERS, audit_user_read, has_scope

ALLOWLIST_FIELD = "population.allowlist"
_ID_LISTS = ("sample_ids", "sample_user_ids")
_DIFF_ID_KEYS = ("old", "new", "added", "removed")
# The engine's allowlist summary names the first offender ("... (first: <user id>)").
_FIRST = " (first: "


def _walk(value: Any, found: list[str], path: str) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        is_allowlist_diff = value.get("field") == ALLOWLIST_FIELD
        for k, v in value.items():
            if k == "allowlist" and isinstance(v, (list, tuple, set, frozenset)):
                found.append(f"{path}{k}")
                out["allowlist_size"] = len(v)
            elif k in _ID_LISTS and isinstance(v, (list, tuple)):
                if v:
                    found.append(f"{path}{k}")
                out[f"{k}_count"] = len(v)
            elif k == "summary" and isinstance(v, str) and _FIRST in v:
                found.append(f"{path}{k}")
                out[k] = v[:v.index(_FIRST)] + _FIRST + "[redacted])"
            elif is_allowlist_diff and k in _DIFF_ID_KEYS:
                if v:
                    found.append(f"{path}{k}")
                if isinstance(v, (list, tuple)) and f"{k}_count" not in value:
                    out[f"{k}_count"] = len(v)
            else:
                out[k] = _walk(v, found, f"{path}{k}.")
        return out
    if isinstance(value, list):
        return [_walk(v, found, path) for v in value]
    return value


def without_user_ids(body: Any) -> tuple[Any, list[str]]:
    """`body` with every user id left out, and where they were (empty: there were none)."""
    found: list[str] = []
    out = _walk(body, found, "")
    return out, sorted(set(found))


def user_data(request: web.Request, body: Any, *, what: str, experiment: str | None = None) -> Any:
    """The body to send: ids left out without `read:users`; with it, unchanged and audited."""
    stripped, found = without_user_ids(body)
    if not found:
        return body
    if has_scope(request, READ_USERS):
        audit_user_read(request, what=what, experiment=experiment, fields=found)
        return body
    if isinstance(stripped, dict):
        stripped["redacted"] = found
    return stripped
