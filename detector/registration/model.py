"""Parsing and validation of registrations: the one path every registration goes through.

`parse_expectation` turns a raw document (a dict from YAML or a JSON body) into the immutable
`detector.expectations.Expectation`, or raises `RegistrationError` listing *every* problem found,
each as a `FieldError` whose `field` is a dotted path (`population.allowlist[3]`) and whose
`message` says what is wrong and what is expected. `expectation_to_dict` is its inverse: the
canonical JSON form (stable key order, sorted sets), so `parse_expectation(expectation_to_dict(e))
== e` for every valid `e`.

Decisions worth knowing (also in the README section on registration):
- Unknown fields are errors, with a suggestion (`allowlist` at top level -> `population.allowlist`).
- A registration that declares no rule at all (no population rule, no window, no variants) is
  rejected: registering it would only silence the `unregistered` alert while checking nothing.
- `experiment` may be omitted in an API body: the key in the path is used.
- Timestamps must be RFC 3339 strings with a time zone (`2021-02-09T18:00:00Z`); they are kept
  as epoch milliseconds. YAML timestamps are *not* converted by our loader, so files and JSON
  bodies are validated identically.
- YAML documents with duplicate keys are rejected (PyYAML would silently keep the last one).
- A bare YAML `yes`/`no`/`on`/`off` where a string is expected (e.g. `country: [NO]`) gets a hint
  to quote it.
- Label names follow Prometheus/Alertmanager label syntax, since alerts carry them there.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from detector.expectations import SEVERITIES, Expectation

SUPPORTED_SCHEMA_VERSIONS = (1,)
EXPERIMENT_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_EXPERIMENT_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
LABEL_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_LABEL_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_RFC3339_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)

MAX_ALLOWLIST = 100_000
MAX_ID_LENGTH = 1024
MAX_MAX_USERS = 2**63 - 1
MAX_ALPHA = 0.05
DEFAULT_ALPHA = 1e-4  # the fleet share at the default budget (1 false page a month over 10,000 experiments)
VARIANT_SUM_TOLERANCE = 1e-6
MAX_VARIANTS = 100
MAX_SEGMENT_ATTRIBUTES = 32
MAX_SEGMENT_VALUES = 10_000
MAX_LABELS = 64
MAX_LABEL_VALUE = 1024
MAX_OWNER = 256
MAX_DESCRIPTION = 10_000
MAX_URL = 2048

TOP_LEVEL_FIELDS = (
    "schema_version",
    "experiment",
    "owner",
    "description",
    "starts_at",
    "ends_at",
    "population",
    "variants",
    "severity",
    "tolerance",
    "alpha",
    "mitigation",
    "labels",
)
POPULATION_FIELDS = ("allowlist", "max_users", "fraction", "segments", "unenrolled_logged")
MITIGATION_FIELDS = ("kill_url",)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# --------------------------------------------------------------------------------------- errors
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


class _Errors:
    def __init__(self) -> None:
        self.items: list[FieldError] = []

    def add(self, field: str, message: str) -> None:
        self.items.append(FieldError(field, message))

    def __len__(self) -> int:
        return len(self.items)


def _type_name(value: Any) -> str:
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
    if isinstance(value, datetime):
        return "timestamp"
    return type(value).__name__


def _got(value: Any) -> str:
    text = f"got {_type_name(value)}"
    if isinstance(value, bool):
        text += f" {str(value).lower()}"
        text += " (YAML reads bare yes/no/on/off/true/false as booleans: quote it)"
    elif isinstance(value, (int, float)):
        text += f" {value!r}"
    elif isinstance(value, str):
        text += f" {_short(value)!r}"
    return text


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key(prefix: str, key: Any) -> str:
    """Dotted path of `key` under `prefix`; keys that would be ambiguous in a path are quoted."""
    text = key if isinstance(key, str) else repr(key)
    if not isinstance(key, str) or not key or any(c.isspace() or c in ".[]'\"" for c in key) or not key.isprintable():
        text = repr(_short(text) if isinstance(key, str) else key)
    else:
        text = _short(text)
    return f"{prefix}.{text}" if prefix else text


# ---------------------------------------------------------------------------------- primitives
def _string(errs: _Errors, field: str, value: Any, *, max_len: int, allow_empty: bool = False) -> str | None:
    if not isinstance(value, str):
        errs.add(field, f"must be a string, {_got(value)}")
        return None
    if not allow_empty and not value.strip():
        errs.add(field, "must not be empty")
        return None
    if len(value) > max_len:
        errs.add(field, f"must be at most {max_len} characters, got {len(value)}")
        return None
    return value


def _ident(errs: _Errors, field: str, value: Any, *, what: str) -> str | None:
    """A user id, segment value or variant name: non-empty, no surrounding whitespace."""
    text = _string(errs, field, value, max_len=MAX_ID_LENGTH)
    if text is None:
        return None
    if text != text.strip():
        errs.add(field, f"{what} {_short(text)!r} has leading or trailing whitespace")
        return None
    return text


def _number(errs: _Errors, field: str, value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errs.add(field, f"must be a number, {_got(value)}")
        return None
    try:
        number = float(value)
    except OverflowError:
        errs.add(field, "is out of range")
        return None
    if not math.isfinite(number):
        errs.add(field, f"must be a finite number, got {value!r}")
        return None
    return number


def _mapping(errs: _Errors, field: str, value: Any) -> dict | None:
    if not isinstance(value, dict):
        errs.add(field, f"must be a mapping, {_got(value)}")
        return None
    ok = True
    for key in value:
        if not isinstance(key, str):
            errs.add(_key(field, key), f"field names must be strings, {_got(key)}")
            ok = False
    return value if ok else None


def _unknown_fields(errs: _Errors, prefix: str, mapping: dict, known: tuple[str, ...], hints: dict[str, str]) -> None:
    for key in mapping:
        if not isinstance(key, str) or key in known:
            continue
        field = _key(prefix.rstrip("."), key)
        if key in hints:
            errs.add(field, f"unknown field; did you mean {hints[key]!r}?")
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
        suggestion = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(known)}"
        errs.add(field, f"unknown field{suggestion}")


def parse_timestamp(value: Any) -> int:
    """RFC 3339 string (with time zone) or aware datetime -> epoch milliseconds; ValueError otherwise."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("has no time zone; write it as RFC 3339, e.g. 2021-02-09T18:00:00Z")
        return (value - _EPOCH) // timedelta(milliseconds=1)
    if not isinstance(value, str):
        raise ValueError(f"must be an RFC 3339 timestamp string such as 2021-02-09T18:00:00Z, {_got(value)}")
    match = _RFC3339_RE.fullmatch(value)
    if match is None:
        raise ValueError(
            f"{_short(value)!r} is not an RFC 3339 timestamp with a time zone, e.g. 2021-02-09T18:00:00Z"
        )
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    frac = match.group(7)
    if match.group(8) in ("Z", "z"):
        offset = timedelta(0)
    else:
        oh, om = int(match.group(10)), int(match.group(11))
        if oh > 23 or om > 59:
            raise ValueError(f"{value!r} has an invalid UTC offset")
        offset = timedelta(hours=oh, minutes=om) * (1 if match.group(9) == "+" else -1)
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid date and time ({exc})") from None
    millis = int((frac[1:] + "000")[:3]) if frac else 0
    return (moment - _EPOCH) // timedelta(seconds=1) * 1000 + millis


def format_timestamp(epoch_ms: int) -> str:
    """Epoch milliseconds -> canonical RFC 3339 in UTC (`Z`), milliseconds only when non-zero."""
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    millis = epoch_ms % 1000
    if millis:
        text += f".{millis:03d}"
    return text + "Z"


def valid_experiment_key(key: Any) -> bool:
    return isinstance(key, str) and _EXPERIMENT_KEY_RE.fullmatch(key) is not None


# ------------------------------------------------------------------------------------- parsing
_TOP_LEVEL_HINTS = {name: f"population.{name}" for name in POPULATION_FIELDS}
_TOP_LEVEL_HINTS.update(
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
_POPULATION_HINTS = {
    "max": "max_users",
    "users": "max_users",
    "maxUsers": "max_users",
    "percent": "fraction (a number in [0, 1])",
    "percentage": "fraction (a number in [0, 1])",
    "allow_list": "allowlist",
    "whitelist": "allowlist",
    "segment": "segments",
}


def parse_expectation(raw: Any, *, path_experiment: str | None = None) -> Expectation:
    """Validate a raw registration and build the `Expectation`.

    `path_experiment` is the experiment named by the API path (or the CLI): the body must agree
    with it, and may omit `experiment` altogether. Raises `RegistrationError` with every problem.
    """
    errs = _Errors()
    if not isinstance(raw, dict):
        raise RegistrationError([FieldError("(document)", f"a registration must be a mapping, {_got(raw)}")])
    if _mapping(errs, "", raw) is None:
        raise RegistrationError(errs.items)
    _unknown_fields(errs, "", raw, TOP_LEVEL_FIELDS, _TOP_LEVEL_HINTS)
    values: dict[str, Any] = {}

    # schema_version
    version = raw.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        errs.add("schema_version", f"must be an integer, {_got(version)}")
    elif version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
        errs.add("schema_version", f"unsupported version {version}; this detector understands {supported}")
    else:
        values["schema_version"] = version

    # experiment
    if "experiment" in raw:
        exp = raw["experiment"]
        if not isinstance(exp, str):
            errs.add("experiment", f"must be a string, {_got(exp)}")
        elif not valid_experiment_key(exp):
            errs.add(
                "experiment",
                f"{_short(exp)!r} is not a valid experiment key: 1-128 characters, letters, digits, "
                "'.', '_' or '-', starting with a letter or digit",
            )
        elif path_experiment is not None and exp != path_experiment:
            errs.add("experiment", f"{exp!r} differs from the experiment in the path {path_experiment!r}")
        else:
            values["experiment"] = exp
    elif path_experiment is not None:
        if valid_experiment_key(path_experiment):
            values["experiment"] = path_experiment
        else:
            errs.add("experiment", f"{_short(str(path_experiment))!r} is not a valid experiment key")
    else:
        errs.add("experiment", "is required")

    # owner, description
    for name, limit in (("owner", MAX_OWNER), ("description", MAX_DESCRIPTION)):
        if raw.get(name) is not None:
            text = _string(errs, name, raw[name], max_len=limit, allow_empty=(name == "description"))
            if text is not None:
                values[name] = text

    # window
    for name in ("starts_at", "ends_at"):
        if raw.get(name) is not None:
            try:
                values[name] = parse_timestamp(raw[name])
            except ValueError as exc:
                errs.add(name, str(exc))
    if "starts_at" in values and "ends_at" in values and values["ends_at"] <= values["starts_at"]:
        errs.add(
            "ends_at",
            f"must be after starts_at ({format_timestamp(values['starts_at'])}), "
            f"got {format_timestamp(values['ends_at'])}",
        )

    # population
    population = raw.get("population")
    if population is not None and _mapping(errs, "population", population) is not None:
        _unknown_fields(errs, "population.", population, POPULATION_FIELDS, _POPULATION_HINTS)
        _parse_population(errs, population, values)

    # variants
    if raw.get("variants") is not None:
        _parse_variants(errs, raw["variants"], values)

    # severity
    if "severity" in raw:
        sev = raw["severity"]
        if not isinstance(sev, str) or sev not in SEVERITIES:
            errs.add("severity", f"must be one of {', '.join(SEVERITIES)}, {_got(sev)}")
        else:
            values["severity"] = sev

    # tolerance, alpha
    if "tolerance" in raw:
        tol = _number(errs, "tolerance", raw["tolerance"])
        if tol is not None:
            if tol < 0:
                errs.add("tolerance", f"must be >= 0, got {raw['tolerance']!r}")
            else:
                values["tolerance"] = tol
    if "alpha" in raw:
        alpha = _number(errs, "alpha", raw["alpha"])
        if alpha is not None:
            if not 0 < alpha <= MAX_ALPHA:
                errs.add("alpha", f"must be in (0, {MAX_ALPHA}], got {raw['alpha']!r}")
            else:
                values["alpha"] = alpha

    # mitigation
    mitigation = raw.get("mitigation")
    if mitigation is not None and _mapping(errs, "mitigation", mitigation) is not None:
        _unknown_fields(errs, "mitigation.", mitigation, MITIGATION_FIELDS, {"url": "kill_url"})
        if mitigation.get("kill_url") is not None:
            url = _parse_url(errs, "mitigation.kill_url", mitigation["kill_url"])
            if url is not None:
                values["kill_url"] = url

    # labels
    labels = raw.get("labels")
    if labels is not None and _mapping(errs, "labels", labels) is not None:
        if len(labels) > MAX_LABELS:
            errs.add("labels", f"must have at most {MAX_LABELS} entries, got {len(labels)}")
        else:
            parsed: dict[str, str] = {}
            for key, val in labels.items():
                if _LABEL_NAME_RE.fullmatch(key) is None:
                    errs.add(_key("labels", key), "label names must match [A-Za-z_][A-Za-z0-9_]*")
                    continue
                text = _string(errs, _key("labels", key), val, max_len=MAX_LABEL_VALUE, allow_empty=True)
                if text is not None:
                    parsed[key] = text
            values["labels"] = parsed

    if not errs:
        expectation = Expectation(**values)
        if not expectation.active_rules():
            errs.add(
                "population",
                "the registration declares no rule, so nothing would be checked: give at least one of "
                "population.allowlist, population.max_users, population.fraction, population.segments, "
                "starts_at/ends_at or variants",
            )
        else:
            return expectation
    raise RegistrationError(errs.items)


def _parse_population(errs: _Errors, population: dict, values: dict[str, Any]) -> None:
    if population.get("allowlist") is not None:
        allowlist = population["allowlist"]
        if not isinstance(allowlist, (list, tuple)):
            errs.add("population.allowlist", f"must be a list of user ids, {_got(allowlist)}")
        elif len(allowlist) > MAX_ALLOWLIST:
            errs.add(
                "population.allowlist",
                f"has {len(allowlist)} entries; at most {MAX_ALLOWLIST} are allowed "
                "(use max_users, fraction or segments for larger populations)",
            )
        else:
            ids: set[str] = set()
            bad = 0
            for i, user in enumerate(allowlist):
                before = len(errs)
                uid = _ident(errs, f"population.allowlist[{i}]", user, what="user id")
                if uid is None:
                    bad += 1
                    if bad >= 20:  # enough to show the pattern; do not flood the response
                        del errs.items[before:]
                        errs.add("population.allowlist", "too many invalid entries; stopped after 20")
                        break
                else:
                    ids.add(uid)
            if not bad:
                values["allowlist"] = frozenset(ids)

    if population.get("max_users") is not None:
        max_users = population["max_users"]
        if isinstance(max_users, bool) or not isinstance(max_users, int):
            errs.add("population.max_users", f"must be a whole number of users, {_got(max_users)}")
        elif max_users < 0:
            errs.add("population.max_users", f"must be >= 0, got {max_users}")
        elif max_users > MAX_MAX_USERS:
            errs.add("population.max_users", f"must be at most {MAX_MAX_USERS}")
        else:
            values["max_users"] = max_users

    if population.get("fraction") is not None:
        raw_fraction = population["fraction"]
        fraction = _number(errs, "population.fraction", raw_fraction)
        if fraction is not None:
            if not 0.0 <= fraction <= 1.0:
                hint = " (a fraction, not a percentage: 10% is 0.1)" if 1 < fraction <= 100 else ""
                errs.add("population.fraction", f"must be in [0, 1], got {raw_fraction!r}{hint}")
            else:
                values["fraction"] = fraction

    if population.get("unenrolled_logged") is not None:
        q = _number(errs, "population.unenrolled_logged", population["unenrolled_logged"])
        if q is not None:
            if not 0.0 <= q <= 1.0:
                errs.add("population.unenrolled_logged", f"must be in [0, 1], got {population['unenrolled_logged']!r}")
            else:
                values["unenrolled_logged"] = q

    if population.get("segments") is not None:
        segments = population["segments"]
        if _mapping(errs, "population.segments", segments) is None:
            return
        if not segments:
            errs.add("population.segments", "must name at least one attribute (omit segments to allow every segment)")
            return
        if len(segments) > MAX_SEGMENT_ATTRIBUTES:
            errs.add("population.segments", f"must have at most {MAX_SEGMENT_ATTRIBUTES} attributes")
            return
        parsed: dict[str, frozenset[str]] = {}
        ok = True
        for attr, allowed in segments.items():
            field = _key("population.segments", attr)
            if not attr.strip() or len(attr) > 128:
                errs.add(field, "attribute names must be 1-128 characters")
                ok = False
                continue
            if not isinstance(allowed, (list, tuple)):
                example = f"[{allowed}]" if isinstance(allowed, str) else "[US, CA]"
                errs.add(field, f"must be a list of allowed values, e.g. {example}; {_got(allowed)}")
                ok = False
                continue
            if not allowed:
                errs.add(field, "must list at least one allowed value")
                ok = False
                continue
            if len(allowed) > MAX_SEGMENT_VALUES:
                errs.add(field, f"must list at most {MAX_SEGMENT_VALUES} values")
                ok = False
                continue
            vals = set()
            for i, value in enumerate(allowed):
                v = _ident(errs, f"{field}[{i}]", value, what="value")
                if v is None:
                    ok = False
                else:
                    vals.add(v)
            parsed[attr] = frozenset(vals)
        if ok:
            values["segments"] = parsed


def _parse_variants(errs: _Errors, variants: Any, values: dict[str, Any]) -> None:
    if _mapping(errs, "variants", variants) is None:
        return
    if not variants:
        errs.add("variants", "must declare at least one variant (omit variants to skip the ratio check)")
        return
    if len(variants) > MAX_VARIANTS:
        errs.add("variants", f"must declare at most {MAX_VARIANTS} variants")
        return
    weights: dict[str, float] = {}
    ok = True
    for name, weight in variants.items():
        field = _key("variants", name)
        if not name.strip() or name != name.strip() or len(name) > 128:
            errs.add(field, "variant names must be 1-128 characters without surrounding whitespace")
            ok = False
            continue
        w = _number(errs, field, weight)
        if w is None:
            ok = False
        elif not 0.0 <= w <= 1.0:
            errs.add(field, f"weight must be in [0, 1], got {weight!r}")
            ok = False
        else:
            weights[name] = w
    if not ok:
        return
    total = math.fsum(weights.values())
    if abs(total - 1.0) > VARIANT_SUM_TOLERANCE:
        errs.add("variants", f"weights must sum to 1, got {total:.6g}")
        return
    values["variants"] = weights


def _parse_url(errs: _Errors, field: str, value: Any) -> str | None:
    text = _string(errs, field, value, max_len=MAX_URL)
    if text is None:
        return None
    if any(ch.isspace() for ch in text):
        errs.add(field, "must not contain whitespace")
        return None
    try:
        parts = urlsplit(text)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        errs.add(field, f"is not a valid URL ({exc})")
        return None
    if parts.scheme not in ("http", "https"):
        errs.add(field, f"must be an http or https URL, got scheme {parts.scheme or '(none)'!r}")
        return None
    if not host:
        errs.add(field, "must name a host")
        return None
    if parts.username is not None or parts.password is not None:
        errs.add(field, "must not embed credentials (they would be shown by GET)")
        return None
    return text


# ---------------------------------------------------------------------------------- canonical
def expectation_to_dict(e: Expectation) -> dict[str, Any]:
    """Canonical JSON form: stable key order, sorted sets, RFC 3339 UTC times, no null fields.

    The inverse of `parse_expectation`: `parse_expectation(expectation_to_dict(e)) == e`.
    """
    out: dict[str, Any] = {"schema_version": e.schema_version, "experiment": e.experiment}
    if e.owner is not None:
        out["owner"] = e.owner
    if e.description is not None:
        out["description"] = e.description
    if e.starts_at is not None:
        out["starts_at"] = format_timestamp(e.starts_at)
    if e.ends_at is not None:
        out["ends_at"] = format_timestamp(e.ends_at)
    population: dict[str, Any] = {}
    if e.allowlist is not None:
        population["allowlist"] = sorted(e.allowlist)
    if e.max_users is not None:
        population["max_users"] = e.max_users
    if e.fraction is not None:
        population["fraction"] = e.fraction
    if e.segments is not None:
        population["segments"] = {k: sorted(e.segments[k]) for k in sorted(e.segments)}
    if e.unenrolled_logged != 1.0:
        population["unenrolled_logged"] = e.unenrolled_logged
    if population:
        out["population"] = population
    if e.variants is not None:
        out["variants"] = {k: e.variants[k] for k in sorted(e.variants)}
    out["severity"] = e.severity
    out["tolerance"] = e.tolerance
    if e.alpha is not None:
        out["alpha"] = e.alpha
    if e.kill_url is not None:
        out["mitigation"] = {"kill_url": e.kill_url}
    if e.labels:
        out["labels"] = {k: e.labels[k] for k in sorted(e.labels)}
    return out


# --------------------------------------------------------------------------------------- YAML
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader that keeps timestamps as strings and rejects duplicate keys."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"unhashable key {key!r}", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
            )
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def yaml_load(text: str | bytes) -> Any:
    """Load exactly one YAML (or JSON) document with the registration loader."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def load_yaml_documents(text: str | bytes, source: str = "(input)") -> list[Any]:
    """All registrations in a YAML text: one mapping, a list of mappings, or several documents."""
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))  # noqa: S506 - SafeLoader subclass
    except RecursionError:
        raise RegistrationError([FieldError("(document)", "invalid YAML: nested too deeply", source)]) from None
    except yaml.YAMLError as exc:
        raise RegistrationError([FieldError("(document)", f"invalid YAML: {exc}", source)]) from None
    out: list[Any] = []
    for doc in docs:
        if doc is None:
            continue
        if isinstance(doc, list):
            out.extend(doc)
        else:
            out.append(doc)
    return out


def load_file(path: str | os.PathLike[str]) -> list[Expectation]:
    """Every registration in one YAML file; errors name the file (and the entry, if several)."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise RegistrationError([FieldError("(file)", f"cannot read: {exc.strerror or exc}", source)]) from None
    raws = load_yaml_documents(text, source)
    if not raws:
        raise RegistrationError([FieldError("(file)", "holds no registration", source)])
    errors: list[FieldError] = []
    out: list[Expectation] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raws):
        where = source if len(raws) == 1 else f"{source}[{i}]"
        try:
            exp = parse_expectation(raw)
        except RegistrationError as exc:
            errors += [FieldError(e.field, e.message, where) for e in exc.errors]
            continue
        if exp.experiment in seen:
            errors.append(
                FieldError("experiment", f"{exp.experiment!r} is registered twice in this file "
                           f"(entries {seen[exp.experiment]} and {i})", where)
            )
            continue
        seen[exp.experiment] = i
        out.append(exp)
    if errors:
        raise RegistrationError(errors)
    return out


def yaml_files(path: str | os.PathLike[str]) -> list[Path]:
    """The *.yaml / *.yml files under a directory, recursively, sorted; hidden paths are skipped
    (so a Kubernetes ConfigMap mount's `..data` links are not read twice)."""
    root = Path(path)
    files = []
    for candidate in root.rglob("*"):
        rel = candidate.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
            files.append(candidate)
    return sorted(files)


def load_dir(path: str | os.PathLike[str]) -> dict[str, Expectation]:
    """Every registration in the YAML files under a directory, keyed by experiment.

    All files are validated before anything is returned: one bad file fails the whole load with
    a `RegistrationError` listing every problem with its file. An experiment registered in two
    files is an error naming both.
    """
    root = Path(path)
    if not root.is_dir():
        raise RegistrationError([FieldError("(directory)", "is not a directory", str(root))])
    errors: list[FieldError] = []
    out: dict[str, Expectation] = {}
    where: dict[str, str] = {}
    for file in yaml_files(root):
        try:
            expectations = load_file(file)
        except RegistrationError as exc:
            errors += exc.errors
            continue
        for exp in expectations:
            if exp.experiment in out:
                errors.append(
                    FieldError("experiment", f"{exp.experiment!r} is also registered in {where[exp.experiment]}",
                               str(file))
                )
                continue
            out[exp.experiment] = exp
            where[exp.experiment] = str(file)
    if errors:
        raise RegistrationError(errors)
    return out


def load_path(path: str | os.PathLike[str]) -> dict[str, Expectation]:
    """A file or a directory, as `load_dir` returns it."""
    p = Path(path)
    if p.is_dir():
        return load_dir(p)
    return {e.experiment: e for e in load_file(p)}
