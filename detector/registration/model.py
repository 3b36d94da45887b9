"""The registration: its typed model, validation, and canonical form. The one source of truth.

A **registration** declares the population an experiment may reach (the concept's one name; the
topic `exposure.expectations`, the paths `/v1/expectations/...` and `config/expectation.schema.json`
keep their historical names because they are contracts).

`Registration` (pydantic v2) is the document users write in YAML or send as JSON. Its field
types and constraints are the validation, and `detector.registration.schema` generates the JSON
Schema and the OpenAPI components from it, so the three cannot drift. `parse_registration`
validates a raw document and compiles it into the engine's immutable view
(`detector.registration.compiled.CompiledRegistration`: epoch milliseconds, frozensets), or raises
`RegistrationError` listing *every* problem, each a `FieldError` with a dotted path
(`population.allowlist[3]`) and a message that says what is wrong and what is expected
(`errors.py` turns pydantic's errors into those messages, with "did you mean" hints).
`registration_to_dict` is its inverse: the canonical JSON form (stable key order, sorted sets),
so `parse_registration(registration_to_dict(e)) == e` for every valid `e`.

Why pydantic rather than msgspec: every error carries its location, all errors are reported at
once (msgspec stops at the first), and its JSON Schema generation is complete enough to publish.
msgspec stays on the hot path (assignment events).

Decisions worth knowing (also in the README section on registration):
- Unknown fields are errors, with a suggestion (`allowlist` at top level -> `population.allowlist`).
- Types are strict: "3" is not a number, 3.0 is not a whole number of users, true is not 1.
- A registration that declares no rule at all (no population rule, no window, no variants) is
  rejected: registering it would only silence the `unregistered` alert while checking nothing.
- `experiment` may be omitted in an API body: the key in the path is used.
- Timestamps must be RFC 3339 strings with a time zone (`2021-02-09T18:00:00Z`); they are kept
  as epoch milliseconds. YAML timestamps are *not* converted by our loader, so files and JSON
  bodies are validated identically.
- Label names follow Prometheus/Alertmanager label syntax, since alerts carry them there.
- `mode: observe` records incidents without paging; `flag` names the flag configuration the
  experiment's exposure comes from (`key` defaults to the experiment).
- `identity.context_kind` names the context kind whose key is the experiment's unit where a
  source carries several (LaunchDarkly multi-kind contexts); sources without kinds ignore it.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from detector.registration.compiled import DEFAULT_TOLERANCE, CompiledRegistration, Flag
from detector.registration.errors import MESSAGES, FieldError, RegistrationError, got, translate
from detector.timestamps import EXAMPLE, RFC3339_PATTERN, format_timestamp, parse_rfc3339

SUPPORTED_SCHEMA_VERSIONS = (1,)
EXPERIMENT_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
LABEL_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
ID_PATTERN = r"^\S([\s\S]*\S)?$"  # no surrounding whitespace
MODES = ("page", "observe")

MAX_ALLOWLIST = 100_000
MAX_ID_LENGTH = 1024
MAX_MAX_USERS = 2**63 - 1
MAX_ALPHA = 0.05
VARIANT_SUM_TOLERANCE = 1e-6
MAX_VARIANTS = 100
MAX_SEGMENT_ATTRIBUTES = 32
MAX_SEGMENT_VALUES = 10_000
MAX_LABELS = 64
MAX_LABEL_VALUE = 1024
MAX_OWNER = 256
MAX_DESCRIPTION = 10_000
MAX_URL = 2048
MAX_NAME = 128
# LaunchDarkly context kinds: ASCII letters, digits, '.', '_' and '-'; "kind" and "multi" are reserved.
CONTEXT_KIND_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
RESERVED_CONTEXT_KINDS = ("kind", "multi")


# ------------------------------------------------------------------------------------- types
def _fail(kind: str, message: str, **ctx: Any) -> PydanticCustomError:
    """A validation error whose message is taken as it is (no template expansion of user text)."""
    return PydanticCustomError(kind, "{message}", {"message": message, **ctx})


def _not_blank(value: str) -> str:
    if not value.strip():
        raise _fail("blank", "must not be empty")
    return value


def _segment_name(value: str) -> str:
    if not value.strip():
        raise _fail("blank", "attribute names must be 1-128 characters")
    return value


def _timestamp(value: Any) -> Any:
    if not isinstance(value, (str, datetime)):
        raise _fail("timestamp", f"must be an RFC 3339 timestamp string such as {EXAMPLE}, {got(value)}")
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise _fail("timestamp", str(exc)) from None


def _kill_url(text: str) -> str:
    if any(ch.isspace() for ch in text):
        raise _fail("url", "must not contain whitespace")
    try:
        parts = urlsplit(text)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise _fail("url", f"is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise _fail("url", f"must be an http or https URL, got scheme {parts.scheme or '(none)'!r}")
    if not host:
        raise _fail("url", "must name a host")
    if parts.username is not None or parts.password is not None:
        raise _fail("url", "must not embed credentials (they would be shown by GET)")
    return text


Ident = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
Timestamp = Annotated[
    int,
    BeforeValidator(_timestamp),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN,
                    "description": "RFC 3339 with a time zone, e.g. 2021-02-09T18:00:00Z"}),
]
KillUrl = Annotated[
    str,
    StringConstraints(max_length=MAX_URL),
    AfterValidator(_kill_url),
    WithJsonSchema({"type": "string", "format": "uri", "maxLength": MAX_URL,
                    "pattern": r"^[hH][tT][tT][pP][sS]?://[^\s@/]+(/\S*)?$",
                    "description": "Opt-in auto-mitigation: POSTed when a critical rule fires."}),
]
SegmentName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME), AfterValidator(_segment_name)]
VariantName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME, pattern=ID_PATTERN)]
LabelName = Annotated[str, StringConstraints(pattern=LABEL_NAME_PATTERN)]
Unit = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class Population(_Strict):
    """Who may be enrolled. Each field present is a separate rule."""

    allowlist: list[Ident] | None = Field(
        None, max_length=MAX_ALLOWLIST, description="The only user ids that may be enrolled (rule allowlist_breach)."
    )
    max_users: int | None = Field(
        None, ge=0, le=MAX_MAX_USERS, description="Most distinct enrolled users (rule max_users_exceeded)."
    )
    fraction: Unit | None = Field(
        None, description="Largest share of eligible traffic enrolled, 0.1 = 10% (rule fraction_exceeded)."
    )
    segments: dict[SegmentName, Annotated[list[Ident], Field(min_length=1, max_length=MAX_SEGMENT_VALUES)]] | None = (
        Field(None, min_length=1, max_length=MAX_SEGMENT_ATTRIBUTES,
              description="Attribute -> allowed values, e.g. {country: [US]} (rule segment_breach).")
    )
    unenrolled_logged: Unit | None = Field(
        None, description="Share of not-enrolled evaluations your SDK logs: 1 (default) all, q sampled at "
        "rate q, 0 only enrolled users are logged (no fraction rule then)."
    )


class Mitigation(_Strict):
    """What the detector may do by itself when a critical rule fires."""

    kill_url: KillUrl | None = None


class FlagRef(_Strict):
    """The flag configuration the experiment's exposure comes from (see `detector.flags`)."""

    source: str | None = Field(None, max_length=MAX_NAME, description="Configured flag source; null: any.")
    key: Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL)] | None = Field(
        None, description="Flag key in that source; default: the experiment key."
    )


def _context_kind(value: str) -> str:
    if value in RESERVED_CONTEXT_KINDS:
        raise _fail("context_kind", f"{value!r} is reserved (LaunchDarkly's multi-context markers); name the kind "
                    "of the unit the experiment randomizes, e.g. user or organization")
    return value


ContextKind = Annotated[
    str,
    StringConstraints(pattern=CONTEXT_KIND_PATTERN),
    AfterValidator(_context_kind),
    WithJsonSchema({"type": "string", "pattern": CONTEXT_KIND_PATTERN, "not": {"enum": list(RESERVED_CONTEXT_KINDS)},
                    "description": "Context kind, e.g. user, organization, device."}),
]


class Identity(_Strict):
    """Which identity of an evaluation is the experiment's unit, where a source carries several."""

    context_kind: ContextKind | None = Field(
        None, description="The context kind whose key is the user: a multi-kind LaunchDarkly context "
        "(contextKeys) yields the key of this kind for this experiment's evaluations. Default: the "
        "source's context_kind option, else user.",
    )


class Registration(_Strict):
    """The exposure an experiment is expected to have, declared before it starts."""

    model_config = ConfigDict(
        title="Exposure registration",
        json_schema_extra={
            "description": (
                "The exposure an experiment is expected to have, declared before it starts. Validated by "
                "detector.registration.parse_registration, which also checks: variant weights sum to 1, "
                "ends_at > starts_at, and at least one rule is declared."
            ),
        },
    )

    schema_version: int = Field(1, json_schema_extra={"enum": list(SUPPORTED_SCHEMA_VERSIONS)})
    experiment: Annotated[str, StringConstraints(pattern=EXPERIMENT_KEY_PATTERN)] = Field(
        description="Experiment key."
    )
    owner: Annotated[str, StringConstraints(min_length=1, max_length=MAX_OWNER), AfterValidator(_not_blank)] | None = (
        None
    )
    description: Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION)] | None = None
    starts_at: Timestamp | None = Field(None, description="Window start, inclusive (rule outside_window).")
    ends_at: Timestamp | None = Field(None, description="Window end, exclusive; after starts_at.")
    population: Population | None = None
    variants: dict[VariantName, Unit] | None = Field(
        None, min_length=1, max_length=MAX_VARIANTS,
        description="Declared split, weights summing to 1 (rule sample_ratio_mismatch).",
    )
    severity: Literal["critical", "error", "warning", "info"] = "warning"
    tolerance: float = Field(
        DEFAULT_TOLERANCE, ge=0, description="The fraction rule alerts above fraction * (1 + tolerance); the "
        "default absorbs a logging gap of a few percent between enrolled and not-enrolled evaluations."
    )
    alpha: float | None = Field(
        None, gt=0, le=MAX_ALPHA, description="Lifetime false-alarm budget of the experiment's statistical rules "
        "(fraction and split together); default: the fleet share DETECTOR_FALSE_PAGE_BUDGET / "
        "DETECTOR_ACTIVE_EXPERIMENTS (1e-4 by default)."
    )
    mitigation: Mitigation | None = None
    labels: dict[LabelName, Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)]] | None = Field(
        None, max_length=MAX_LABELS
    )
    mode: Literal["page", "observe"] = Field(
        "page", description="page: notify the routed sinks; observe: record incidents without paging."
    )
    flag: FlagRef | None = None
    identity: Identity | None = None

    @field_validator("schema_version")
    @classmethod
    def _supported(cls, version: int) -> int:
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
            raise _fail("schema_version", f"unsupported version {version}; this detector understands {supported}")
        return version

    @field_validator("variants")
    @classmethod
    def _sum_to_one(cls, variants: dict[str, float] | None) -> dict[str, float] | None:
        if variants is not None:
            total = math.fsum(variants.values())
            if abs(total - 1.0) > VARIANT_SUM_TOLERANCE:
                raise _fail("variant_sum", f"weights must sum to 1, got {total:.6g}")
        return variants

    @model_validator(mode="after")
    def _coherent(self) -> Registration:
        if self.starts_at is not None and self.ends_at is not None and self.ends_at <= self.starts_at:
            raise _fail("window", f"must be after starts_at ({format_timestamp(self.starts_at)}), "
                        f"got {format_timestamp(self.ends_at)}", field="ends_at")
        if not compile_registration(self).active_rules():
            raise _fail(
                "no_rule",
                "the registration declares no rule, so nothing would be checked: give at least one of "
                "population.allowlist, population.max_users, population.fraction, population.segments, "
                "starts_at/ends_at or variants",
                field="population",
            )
        return self


TOP_LEVEL_FIELDS = tuple(Registration.model_fields)
POPULATION_FIELDS = tuple(Population.model_fields)
MITIGATION_FIELDS = tuple(Mitigation.model_fields)
_FIELDS = {"": TOP_LEVEL_FIELDS, "population": POPULATION_FIELDS, "mitigation": MITIGATION_FIELDS,
           "flag": tuple(FlagRef.model_fields), "identity": tuple(Identity.model_fields)}
MESSAGES[("greater_than", "alpha")] = lambda v, c: f"must be in (0, {MAX_ALPHA}], got {v!r}"
MESSAGES[("less_than_equal", "alpha")] = MESSAGES[("greater_than", "alpha")]
MESSAGES[("string_pattern_mismatch", "identity.context_kind")] = lambda v, c: (
    f"must be 1-64 ASCII letters, digits, '.', '_' or '-' (a context kind such as organization), got {v!r}"[:200])


# ------------------------------------------------------------------------------ compile/encode
def compile_registration(doc: Registration) -> CompiledRegistration:
    """The engine's immutable view of a validated document."""
    pop = doc.population or Population()
    return CompiledRegistration(
        experiment=doc.experiment,
        owner=doc.owner,
        description=doc.description,
        starts_at=doc.starts_at,
        ends_at=doc.ends_at,
        allowlist=None if pop.allowlist is None else frozenset(pop.allowlist),
        max_users=pop.max_users,
        fraction=None if pop.fraction is None else float(pop.fraction),
        segments=None if pop.segments is None else {k: frozenset(v) for k, v in pop.segments.items()},
        variants=None if doc.variants is None else {k: float(v) for k, v in doc.variants.items()},
        severity=doc.severity,
        tolerance=float(doc.tolerance),
        alpha=None if doc.alpha is None else float(doc.alpha),
        unenrolled_logged=1.0 if pop.unenrolled_logged is None else float(pop.unenrolled_logged),
        kill_url=doc.mitigation.kill_url if doc.mitigation else None,
        labels=dict(doc.labels or {}),
        schema_version=doc.schema_version,
        mode=doc.mode,
        flag=None if doc.flag is None else Flag(source=doc.flag.source, key=doc.flag.key or doc.experiment),
        context_kind=doc.identity.context_kind if doc.identity else None,
    )


def parse_registration(raw: Any, *, path_experiment: str | None = None) -> CompiledRegistration:
    """Validate a raw registration (a dict from YAML or a JSON body) and compile it.

    `path_experiment` is the experiment named by the API path (or the CLI): the body must agree
    with it, and may omit `experiment` altogether. Raises `RegistrationError` with every problem.
    """
    if not isinstance(raw, dict):
        doc: Any = raw
    elif path_experiment is not None and "experiment" not in raw:
        doc = {**raw, "experiment": path_experiment}
    else:
        doc = raw
    errors: list[FieldError] = []
    if path_experiment is not None and isinstance(raw, dict) and isinstance(raw.get("experiment"), str):
        if raw["experiment"] != path_experiment:
            errors.append(FieldError(
                "experiment", f"{raw['experiment']!r} differs from the experiment in the path {path_experiment!r}"
            ))
    try:
        registration = Registration.model_validate(doc)
    except ValidationError as exc:
        errors[:0] = translate(exc, doc, lambda parent: _FIELDS.get(parent, ()))
        raise RegistrationError(_dedupe(errors)) from None
    if errors:
        raise RegistrationError(errors)
    return compile_registration(registration)


def _dedupe(errors: list[FieldError]) -> list[FieldError]:
    seen: set[tuple[str, str]] = set()
    out = []
    for e in errors:
        if (e.field, e.message) not in seen:
            seen.add((e.field, e.message))
            out.append(e)
    return out


def registration_to_dict(e: CompiledRegistration) -> dict[str, Any]:
    """Canonical JSON form: stable key order, sorted sets, RFC 3339 UTC times, no null fields,
    `mode` only when not the default. The inverse of `parse_registration`."""
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
    if e.mode != "page":
        out["mode"] = e.mode
    if e.flag is not None:
        out["flag"] = {"source": e.flag.source, "key": e.flag.key}
    if e.context_kind is not None:
        out["identity"] = {"context_kind": e.context_kind}
    return out


EXPERIMENT_KEY_RE = re.compile(EXPERIMENT_KEY_PATTERN[1:-1])


def valid_experiment_key(key: Any) -> bool:
    return isinstance(key, str) and EXPERIMENT_KEY_RE.fullmatch(key) is not None

