"""Error bodies and request parts shared by every route.

Every error is JSON: `{"error": summary, "errors": [{"field", "message"}, ...]}`; handlers raise
`HTTPProblem` (or `field_problem(...)`) and the error middleware (`detector.web.middleware`)
turns it into the response.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

MAX_BODY_BYTES = 1024 * 1024


class HTTPProblem(Exception):
    def __init__(self, status: int, error: str, errors: list[dict[str, Any]] | None = None, **extra: Any):
        super().__init__(error)
        self.status, self.error, self.errors, self.extra = status, error, errors or [], extra
        self.headers: dict[str, str] = {}

    def response(self) -> web.Response:
        body = {"error": self.error, "errors": self.errors, **self.extra}
        return json_response(body, status=self.status, headers=self.headers)


def field_problem(status: int, error: str, field: str, message: str) -> HTTPProblem:
    return HTTPProblem(status, error, [{"field": field, "message": message}])


def _default(value: Any) -> Any:
    """Serialise what observations from the engine may hold: numpy scalars, sets."""
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body, default=_default, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def route_body_limit(request: web.Request, default: int = MAX_BODY_BYTES) -> int:
    """The body limit the matched route declared (`add_route(..., max_body=...)`), else `default`."""
    limit = getattr(request.match_info.handler, "max_body", None)
    return int(limit) if limit else default


# A body a middleware already read (within the limit), e.g. to check a fleet hop's signature of it.
BODY_KEY: web.RequestKey[bytes] = web.RequestKey("detector.body", bytes)


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """The request body, or 413 as soon as it is known to exceed `limit` bytes (default: the route's)."""
    if BODY_KEY in request:
        return request[BODY_KEY]
    limit = route_body_limit(request) if limit is None else limit
    too_large = field_problem(
        413, "request body too large", "(body)", f"must be at most {limit} bytes ({limit // 1024} KiB)"
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks, size = [], 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def first_lone_surrogate(value: Any, path: str = "(body)", depth: int = 0) -> str | None:
    """The path of the first string holding a lone UTF-16 surrogate (JSON `"\\ud800"`), or None.

    Such a string cannot be encoded as UTF-8: stored or echoed, it fails later (a 500, a topic
    record nobody can read). Refused at the door instead (400).
    """
    if depth > 200:
        return None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, Mapping):
        for k, v in value.items():
            found = first_lone_surrogate(k, path, depth + 1) or first_lone_surrogate(v, f"{path}.{k}", depth + 1)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = first_lone_surrogate(v, f"{path}[{i}]", depth + 1)
            if found:
                return found
    return None


# ------------------------------------------------------------------------------------ paging
DEFAULT_PAGE, MAX_PAGE = 100, 1000


def int_param(q: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    if name not in q or q[name] == "":
        return default
    raw = q[name].strip()
    if not (raw.isascii() and raw.lstrip("-").isdigit() and len(raw) <= 12):
        raise field_problem(400, f"invalid query parameter {name}", name, f"must be an integer {lo}..{hi}")
    v = int(raw)
    if not lo <= v <= hi:
        raise field_problem(400, f"invalid query parameter {name}", name, f"must be an integer {lo}..{hi}")
    return v


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def encode_cursor(key: list[Any]) -> str:
    """An opaque cursor holding the sort key of the last item served."""
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(cursor: str, shape: tuple[type, ...]) -> list[Any]:
    """The sort key of a cursor; 400 for anything that is not one of ours (never an overflow)."""
    problem = field_problem(400, "malformed cursor", "cursor", "pass next_cursor from the previous page unchanged")
    if len(cursor) > 1024 or not set(cursor) <= _B64URL:
        raise problem
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise problem from None
    if not isinstance(key, list) or len(key) != len(shape) or not all(
            isinstance(k, t) and not isinstance(k, bool) for k, t in zip(key, shape)):
        raise problem
    return key


def paged(request: web.Request, items: list[Any], key, *, shape: tuple[type, ...], reverse: bool = False,
          default_limit: int = DEFAULT_PAGE) -> tuple[list[Any], str | None]:
    """One page of `items` (already sorted by `key`, descending if `reverse`) and the next cursor.

    The cursor is the sort key of the last item served (not a position), so an item added or
    removed between two pages moves nothing, and no number in it can overflow anything.
    """
    limit = int_param(request.query, "limit", default_limit, 1, MAX_PAGE)
    cursor = request.query.get("cursor") or None
    if cursor is not None:
        after = decode_cursor(cursor, shape)
        items = [it for it in items if (list(key(it)) < after if reverse else list(key(it)) > after)]
    page = items[:limit]
    next_cursor = encode_cursor(list(key(page[-1]))) if len(items) > limit else None
    return page, next_cursor


def next_link(request: web.Request, next_cursor: str | None) -> str | None:
    """The relative URL of the next page (same query, new cursor), or None at the end."""
    if not next_cursor:
        return None
    q = {k: v for k, v in request.query.items() if k != "cursor"}
    q["cursor"] = next_cursor
    return str(request.rel_url.with_query(q))
