"""Registration errors: pydantic's validation errors as messages a registration's author can act on.

Every problem becomes a `FieldError`: `field` is a dotted path into the document
(`population.segments.country[0]`, `labels.'team name'`), `message` says what is wrong and what is
expected, with the value found (`got string '0.1'`) and hints: an unknown field gets "did you mean"
(`allowlist` at the top level -> `population.allowlist`), a bare YAML `no` gets "quote it", a
fraction of 10 gets "a fraction, not a percentage".
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError
    from pydantic_core import ErrorDetails

MAX_REPORTED_PER_LIST = 20  # invalid entries of one list reported before "stopped after 20"


@dataclass(frozen=True)
class FieldError:
    """One problem: `field` is a dotted path into the document, `message` says what is wrong."""

    field: str
    message: str
    source: str | None = None  # file (and document index) the problem came from, if any

    def to_dict(self) -> dict[str, str]:
        out = {"field": self.field, "message": self.message}
        if self.source is not None:
            out["source"] = self.source
        return out

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return f"{prefix}{self.field}: {self.message}"


class RegistrationError(ValueError):
    """A registration (or a file of them) is invalid; `errors` lists every problem found."""

    def __init__(self, errors: list[FieldError]):
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors) or "invalid registration")

    def to_dicts(self) -> list[dict[str, str]]:
        return [e.to_dict() for e in self.errors]


# --------------------------------------------------------------------------- describing values
def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def got(value: Any) -> str:
    text = f"got {type_name(value)}"
    if isinstance(value, bool):
        text += f" {str(value).lower()}"
        text += " (YAML reads bare yes/no/on/off/true/false as booleans: quote it)"
    elif isinstance(value, (int, float)):
        text += f" {value!r}"
    elif isinstance(value, str):
        text += f" {short(value)!r}"
    return text


def short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def key_path(prefix: str, key: Any) -> str:
    """Dotted path of `key` under `prefix`; keys that would be ambiguous in a path are quoted."""
    text = key if isinstance(key, str) else repr(key)
    if not isinstance(key, str) or not key or any(c.isspace() or c in ".[]'\"" for c in key) or not key.isprintable():
        text = repr(short(text) if isinstance(key, str) else key)
    else:
        text = short(text)
    return f"{prefix}.{text}" if prefix else text


def path_of(loc: tuple[Any, ...], doc: Any) -> str:
    """The dotted path of a pydantic location, walking the document to tell list indexes from keys."""
    path, node = "", doc
    for part in loc:
        if isinstance(node, list) and isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if 0 <= part < len(node) else None
        else:
            path = key_path(path, part)
            node = node.get(part) if isinstance(node, dict) else None
    return path


# ------------------------------------------------------------------------------------- hints
TOP_LEVEL_HINTS = {name: f"population.{name}" for name in ("allowlist", "max_users", "fraction", "segments")}
TOP_LEVEL_HINTS.update(
    {
        "kill_url": "mitigation.kill_url",
        "start": "starts_at",
        "end": "ends_at",
        "start_at": "starts_at",
        "end_at": "ends_at",
        "name": "experiment",
        "key": "experiment",
        "version": "schema_version",
        "weights": "variants",
        "split": "variants",
    }
)
POPULATION_HINTS = {
    "max": "max_users",
    "users": "max_users",
    "maxUsers": "max_users",
    "percent": "fraction (a number in [0, 1])",
    "percentage": "fraction (a number in [0, 1])",
    "allow_list": "allowlist",
    "whitelist": "allowlist",
    "segment": "segments",
}
HINTS: dict[str, dict[str, str]] = {"": TOP_LEVEL_HINTS, "population": POPULATION_HINTS, "mitigation": {"url": "kill_url"}}


def unknown_field(parent: str, key: str, known: tuple[str, ...]) -> str:
    hints = HINTS.get(parent, {})
    if key in hints:
        return f"unknown field; did you mean {hints[key]!r}?"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return "unknown field" + (f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(known)}")


# ---------------------------------------------------------------------------------- messages
def _fraction_range(v: Any, ctx: dict[str, Any]) -> str:
    hint = " (a fraction, not a percentage: 10% is 0.1)" if isinstance(v, (int, float)) and 1 < v <= 100 else ""
    return f"must be in [0, 1], got {v!r}{hint}"


# (error type, field pattern) -> message(value, ctx); the pattern is the path with list indexes
# and mapping keys replaced by `[]` and `.*` (`population.segments.*[]`), or "" for any field.
Message = Callable[[Any, dict[str, Any]], str]
MESSAGES: dict[tuple[str, str], Message] = {
    ("missing", ""): lambda v, c: "is required",
    ("string_type", ""): lambda v, c: f"must be a string, {got(v)}",
    ("string_too_short", ""): lambda v, c: "must not be empty",
    ("string_too_long", ""): lambda v, c: f"must be at most {c['max_length']} characters, got {len(v)}",
    ("int_type", ""): lambda v, c: f"must be an integer, {got(v)}",
    ("int_type", "population.max_users"): lambda v, c: f"must be a whole number of users, {got(v)}",
    ("float_type", ""): lambda v, c: f"must be a number, {got(v)}",
    ("finite_number", ""): lambda v, c: f"must be a finite number, got {v!r}",
    ("dict_type", ""): lambda v, c: f"must be a mapping, {got(v)}",
    ("model_type", ""): lambda v, c: f"must be a mapping, {got(v)}",
    ("list_type", ""): lambda v, c: f"must be a list, {got(v)}",
    ("list_type", "population.allowlist"): lambda v, c: f"must be a list of user ids, {got(v)}",
    ("list_type", "population.segments.*"): lambda v, c: (
        f"must be a list of allowed values, e.g. {f'[{v}]' if isinstance(v, str) else '[US, CA]'}; {got(v)}"
    ),
    ("too_long", ""): lambda v, c: f"must have at most {c['max_length']} entries, got {c.get('actual_length')}",
    ("too_long", "population.allowlist"): lambda v, c: (
        f"has {len(v)} entries; at most {c['max_length']} are allowed "
        "(use max_users, fraction or segments for larger populations)"
    ),
    ("too_long", "population.segments.*"): lambda v, c: f"must list at most {c['max_length']} values",
    ("too_long", "population.segments"): lambda v, c: f"must have at most {c['max_length']} attributes",
    ("too_long", "variants"): lambda v, c: f"must declare at most {c['max_length']} variants",
    ("too_short", ""): lambda v, c: "must not be empty",
    ("too_short", "population.segments.*"): lambda v, c: "must list at least one allowed value",
    ("too_short", "population.segments"): lambda v, c: (
        "must name at least one attribute (omit segments to allow every segment)"
    ),
    ("too_short", "variants"): lambda v, c: "must declare at least one variant (omit variants to skip the ratio check)",
    ("string_pattern_mismatch", "experiment"): lambda v, c: (
        f"{short(v)!r} is not a valid experiment key: 1-128 characters, letters, digits, "
        "'.', '_' or '-', starting with a letter or digit"
    ),
    ("string_pattern_mismatch", "population.allowlist[]"): lambda v, c: (
        f"user id {short(v)!r} has leading or trailing whitespace"
    ),
    ("string_pattern_mismatch", "population.segments.*[]"): lambda v, c: (
        f"value {short(v)!r} has leading or trailing whitespace"
    ),
    ("string_pattern_mismatch", "labels.*"): lambda v, c: "label names must match [A-Za-z_][A-Za-z0-9_]*",
    ("string_pattern_mismatch", "variants.*"): lambda v, c: (
        "variant names must be 1-128 characters without surrounding whitespace"
    ),
    ("string_too_short", "variants.*"): lambda v, c: (
        "variant names must be 1-128 characters without surrounding whitespace"
    ),
    ("string_too_long", "variants.*"): lambda v, c: (
        "variant names must be 1-128 characters without surrounding whitespace"
    ),
    ("string_too_short", "population.segments.*"): lambda v, c: "attribute names must be 1-128 characters",
    ("string_too_long", "population.segments.*"): lambda v, c: "attribute names must be 1-128 characters",
    ("greater_than_equal", "population.fraction"): _fraction_range,
    ("less_than_equal", "population.fraction"): _fraction_range,
    ("greater_than_equal", "variants.*"): lambda v, c: f"weight must be in [0, 1], got {v!r}",
    ("less_than_equal", "variants.*"): lambda v, c: f"weight must be in [0, 1], got {v!r}",
    ("greater_than_equal", ""): lambda v, c: f"must be >= {c['ge']:g}, got {v!r}",
    ("less_than_equal", ""): lambda v, c: f"must be at most {c['le']}",
    ("literal_error", "severity"): lambda v, c: f"must be one of {c['expected_plain']}, {got(v)}",
    ("literal_error", ""): lambda v, c: f"must be one of {c['expected_plain']}, {got(v)}",
}
_KEY_ERROR = {"string_type": lambda v, c: f"field names must be strings, {got(v)}"}


_MAPS = ("population.segments", "variants", "labels")  # mappings whose keys are data, not fields


def _pattern(loc: tuple[Any, ...]) -> str:
    """The `MESSAGES` key of a location: list indexes as `[]`, keys of data mappings as `*`."""
    out = ""
    for part in loc:
        out += "[]" if isinstance(part, int) else ("." if out else "") + ("*" if out in _MAPS else str(part))
    return out


def _split_key(loc: tuple[Any, ...], doc: Any) -> tuple[tuple[Any, ...], bool]:
    """`loc` without pydantic's trailing `[key]` marker, and whether the error is about a mapping
    key. (A document may have a field literally named "[key]": then it is a field, not a marker.)"""
    if not loc or loc[-1] != "[key]":
        return loc, False
    node = doc
    for part in loc[:-1]:
        node = node[part] if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node) else (
            node.get(part) if isinstance(node, dict) else None)
    if isinstance(node, dict) and "[key]" in node:
        return loc, False
    return loc[:-1], True


def _message(err: ErrorDetails, loc: tuple[Any, ...], is_key: bool) -> str:
    kind, value = err["type"], err.get("input")
    ctx = dict(err.get("ctx") or {})
    if "expected" in ctx:
        ctx["expected_plain"] = ctx["expected"].replace("'", "").replace(" or ", ", ")
    if is_key and kind in _KEY_ERROR:
        return _KEY_ERROR[kind](value, ctx)
    fn = MESSAGES.get((kind, _pattern(loc))) or MESSAGES.get((kind, ""))
    return fn(value, ctx) if fn else err["msg"]


def translate(exc: ValidationError, doc: Any, known_fields: Callable[[str], tuple[str, ...]]) -> list[FieldError]:
    """Every pydantic error of `exc` (validating `doc`) as a `FieldError`, in document order.

    `known_fields(parent_path)` names the fields of the object at that path, for "did you mean"."""
    out: list[FieldError] = []
    per_list: dict[str, int] = {}
    for err in exc.errors():
        loc, is_key = _split_key(tuple(err["loc"]), doc)
        ctx = err.get("ctx") or {}
        if not loc and "field" in ctx:
            out.append(FieldError(str(ctx["field"]), _message(err, loc, is_key)))
            continue
        if err["type"] in ("model_type", "dict_type") and not loc:
            out.append(FieldError("(document)", f"a registration must be a mapping, {got(err.get('input'))}"))
            continue
        path = path_of(loc, doc) if loc else "(document)"
        if err["type"] == "extra_forbidden":
            parent = path_of(loc[:-1], doc)
            out.append(FieldError(path, unknown_field(parent, str(loc[-1]), known_fields(parent))))
            continue
        list_at = next((path_of(loc[:i], doc) for i, p in enumerate(loc) if isinstance(p, int) and i), None)
        if list_at is not None:
            per_list[list_at] = per_list.get(list_at, 0) + 1
            if per_list[list_at] == MAX_REPORTED_PER_LIST + 1:
                out.append(FieldError(list_at, f"too many invalid entries; stopped after {MAX_REPORTED_PER_LIST}"))
            if per_list[list_at] > MAX_REPORTED_PER_LIST:
                continue
        out.append(FieldError(path, _message(err, loc, is_key)))
    return out
