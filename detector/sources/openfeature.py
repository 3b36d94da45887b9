"""OpenFeature / OpenTelemetry feature-flag evaluation events -> `Assignment`.

Three shapes are accepted, recognised by their keys:

1. OpenTelemetry semantic conventions, as a flat JSON object of attributes (what most
   log/span exporters to Kafka produce; event name `feature_flag.evaluation`):
   `feature_flag.key`, `feature_flag.result.variant` (older: `feature_flag.variant`),
   `feature_flag.context.id` (the targeting key), `feature_flag.result.reason`
   (older: `feature_flag.evaluation.reason`), `error.type`; time in `timestamp` /
   `time` (RFC 3339 or epoch ms) or `timeUnixNano`.
2. One OTLP/JSON log record (`{"resourceLogs": [{"scopeLogs": [{"logRecords": [...]}]}]}`)
   with those attributes as OTLP key/values. An export holding several records is
   rejected with that reason: export one evaluation per Kafka record.
3. An OpenFeature hook payload (evaluation details + context, as the SDKs name them):
   `{"flagKey", "variant", "value", "reason", "errorCode", "context": {"targetingKey", ...}}`.

Mapping: experiment = flag key; variant = the variant, else the value as text (boolean
flags without variants); user_id = targeting key (else `enduser.id` / `user.id`).
Enrolled unless the evaluation says the user got the fallback: reason `DEFAULT`,
`DISABLED` or `ERROR`, or an error code. Those count as evaluated but not enrolled
(the denominator of a `fraction`). Attributes: the evaluation context (OpenFeature),
or `feature_flag.context.<name>` and the other non-`feature_flag.*` scalar attributes
(OTel), e.g. `country`, `platform`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from detector.events import Assignment, Rejected

from ._common import (
    Id,
    Text,
    assignments,
    cached,
    column,
    enrolled_only,
    only_known_keys,
    times_ms,
    NOT_EXPOSURE,
    RecordDecoder,
    Reject,
    assignment,
    ensure_options,
    epoch_ms,
    load_object,
    required_text,
    scalar_attributes,
    text,
)

FORMAT = "openfeature"
OPTIONS: dict[str, tuple[str, ...] | None] = {}

NOT_ENROLLED_REASONS = {"DEFAULT", "DISABLED", "ERROR"}
_KEY = ("feature_flag.key",)
_VARIANT = ("feature_flag.result.variant", "feature_flag.variant")
_VALUE = ("feature_flag.result.value", "feature_flag.value")
_USER = ("feature_flag.context.id", "enduser.id", "user.id", "user_id", "targetingKey")
_REASON = ("feature_flag.result.reason", "feature_flag.evaluation.reason", "feature_flag.reason")
_ERROR = ("error.type", "feature_flag.evaluation.error.message", "feature_flag.error.type")
_TIME = ("timestamp", "time", "@timestamp")
_SKIP = frozenset(_KEY + _VARIANT + _VALUE + _USER + _REASON + _ERROR + _TIME) | {"timeUnixNano", "observedTimeUnixNano"}


def decode_openfeature(value: bytes | None, record_ts_ms: int = 0) -> Assignment | Rejected:
    """Decode one flag-evaluation event (any of the three shapes). Never raises."""
    try:
        doc = load_object(value, "feature-flag evaluation")
        if "resourceLogs" in doc:
            return _from_attributes(*_otlp_record(doc), record_ts_ms)
        if "flagKey" in doc:
            return _from_openfeature(doc, record_ts_ms)
        if any(k in doc for k in _KEY):
            return _from_attributes(doc, None, record_ts_ms)
        raise Reject("not a feature-flag evaluation: expected feature_flag.key (OpenTelemetry), "
                     "flagKey (OpenFeature) or resourceLogs (OTLP)", "not_exposure")
    except Reject as exc:
        return Rejected(exc.reason, value, exc.kind)


def _first(doc: dict, keys: tuple[str, ...]) -> Any:
    for k in keys:
        if doc.get(k) not in (None, ""):
            return doc[k]
    return None


def _variant(variant: Any, value: Any, field: str) -> str | None:
    v = text(variant, field) if not isinstance(variant, bool) else None
    if v is not None:
        return v
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        s = str(value)
        return s if len(s) <= 256 else None
    return None  # object values without a variant name: enrolled, variant unknown


def _enrolled(reason: Any, error: Any) -> bool:
    if error not in (None, "", "NONE"):
        return False
    return not (isinstance(reason, str) and reason.strip().upper() in NOT_ENROLLED_REASONS)


def _from_attributes(attrs: dict, time_unix_nano: Any, record_ts_ms: int) -> Assignment:
    experiment = required_text(_first(attrs, _KEY), "feature_flag.key")
    user = text(_first(attrs, _USER), "feature_flag.context.id")
    if user is None:
        raise Reject(f"evaluation of {experiment!r} has no targeting key (feature_flag.context.id)")
    enrolled = _enrolled(_first(attrs, _REASON), _first(attrs, _ERROR))
    variant = _variant(_first(attrs, _VARIANT), _first(attrs, _VALUE), "feature_flag.result.variant")
    if time_unix_nano is None:
        time_unix_nano = attrs.get("timeUnixNano") or attrs.get("observedTimeUnixNano")
    if time_unix_nano not in (None, "", 0, "0"):
        try:
            ts = int(time_unix_nano) // 1_000_000
        except (TypeError, ValueError):
            raise Reject(f"invalid timeUnixNano: {str(time_unix_nano)[:40]!r}", "invalid_ts") from None
    else:
        f = next((k for k in _TIME if attrs.get(k) is not None), None)
        ts = epoch_ms(attrs[f], f, record_ts_ms) if f else record_ts_ms
    # Context attributes first (they win a name clash), then the other scalars, each in key order.
    context, other = [], []
    for k, v in attrs.items():
        if k in _SKIP:
            continue
        if k.startswith("feature_flag."):
            if k.startswith("feature_flag.context."):
                context.append((k[21:], v))
        elif k != "event.name":
            other.append((k, v))
    context.sort()
    other.sort()
    out = scalar_attributes(context)
    return assignment(experiment, user, variant, enrolled, ts, scalar_attributes(other, out))


def _from_openfeature(doc: dict, record_ts_ms: int) -> Assignment:
    experiment = required_text(doc.get("flagKey"), "flagKey")
    ctx = doc.get("context") if doc.get("context") is not None else doc.get("evaluationContext")
    if ctx is not None and not isinstance(ctx, dict):
        raise Reject("context must be an object (the OpenFeature evaluation context)")
    ctx = ctx or {}
    user = text(ctx.get("targetingKey") if ctx.get("targetingKey") not in (None, "") else doc.get("targetingKey"),
                "context.targetingKey")
    if user is None:
        raise Reject(f"evaluation of {experiment!r} has no targeting key (context.targetingKey)")
    enrolled = _enrolled(doc.get("reason"), doc.get("errorCode"))
    variant = _variant(doc.get("variant"), doc.get("value"), "variant")
    f = next((k for k in _TIME if doc.get(k) is not None), None)
    ts = epoch_ms(doc[f], f, record_ts_ms) if f else record_ts_ms
    attrs = scalar_attributes((k, v) for k, v in sorted(ctx.items()) if k != "targetingKey")
    return assignment(experiment, user, variant, enrolled, ts, attrs)


def _otlp_value(v: Any) -> Any:
    if not isinstance(v, dict):
        return None
    for k in ("stringValue", "boolValue", "doubleValue"):
        if k in v:
            return v[k]
    if "intValue" in v:  # OTLP/JSON encodes 64-bit ints as strings
        try:
            return int(v["intValue"])
        except (TypeError, ValueError):
            return None
    return None  # arrays and maps are not attributes we use


def _otlp_record(doc: dict) -> tuple[dict, Any]:
    records: list[Any] = []
    try:
        for rl in doc["resourceLogs"] or []:
            for sl in rl.get("scopeLogs") or []:
                records.extend(sl.get("logRecords") or [])
    except (AttributeError, TypeError):
        raise Reject("malformed OTLP logs: resourceLogs[].scopeLogs[].logRecords[] expected") from None
    if len(records) != 1:
        raise Reject(f"OTLP export with {len(records)} log records: export one flag evaluation per Kafka record")
    rec = records[0]
    if not isinstance(rec, dict):
        raise Reject("malformed OTLP log record")
    attrs: dict[str, Any] = {}
    for kv in rec.get("attributes") or []:
        if isinstance(kv, dict) and isinstance(kv.get("key"), str):
            attrs[kv["key"]] = _otlp_value(kv.get("value"))
    name = rec.get("eventName") or attrs.get("event.name")
    if name not in (None, "feature_flag.evaluation", "feature_flag"):
        raise Reject(f"OTLP log record {str(name)[:60]!r} is not a feature_flag.evaluation event", NOT_EXPOSURE)
    return attrs, rec.get("timeUnixNano") or rec.get("observedTimeUnixNano")


class _FlatEvaluation(msgspec.Struct, gc=False):
    """The common flat OpenTelemetry shape, for the fast path: these keys only (`only_known_keys`).

    None is absent (a JSON null counts as absent in `_from_attributes` too, and its key makes the
    quote count differ, so such a batch takes the per-record path)."""

    event_name: str | None = msgspec.field(default=None, name="event.name")
    key: Id | None = msgspec.field(default=None, name="feature_flag.key")
    variant: Text | None = msgspec.field(default=None, name="feature_flag.result.variant")
    value: str | bool | int | float | None = msgspec.field(default=None, name="feature_flag.result.value")
    user: Id | None = msgspec.field(default=None, name="feature_flag.context.id")
    reason: str | None = msgspec.field(default=None, name="feature_flag.result.reason")
    error: str | None = msgspec.field(default=None, name="error.type")
    provider: str | None = msgspec.field(default=None, name="feature_flag.provider.name")
    timestamp: str | int | None = None


_key, _variant_col, _value, _user = column("key"), column("variant"), column("value"), column("user")
_reason, _error, _timestamp = column("reason"), column("error"), column("timestamp")
_event_name, _provider = column("event_name"), column("provider")


def _enrolled_of(reason: Any, error: Any = None) -> bool:
    return _enrolled(reason or None, error or None)


def _variant_of(variant: Any, value: Any) -> str | None:
    if variant:
        return variant
    return _variant(None, None if value == "" else value, "feature_flag.result.variant")


def _fast(wires: list, record_ts: list[int], values: list) -> list[Assignment] | None:
    """`_from_attributes` over a batch of flat OTel evaluations with no other key, or None."""
    keys, users, variants, reasons, errors = _key(wires), _user(wires), _variant_col(wires), _reason(wires), \
        _error(wires)
    flag_values, stamps = _value(wires), _timestamp(wires)
    if not all(keys) or not all(users) or not only_known_keys(
            values, [keys, users, variants, reasons, errors, _event_name(wires), _provider(wires)],
            [flag_values, stamps]):
        return None
    ts = times_ms(stamps, record_ts)
    if ts is None:
        return None
    if not all(variants):
        variants = list(map(_variant_of, variants, flag_values))
    enrolled = cached(_enrolled_of, reasons) if not any(errors) else cached(_enrolled_of, reasons, errors)
    return assignments(keys, users, enrolled_only(variants, enrolled), enrolled, ts, None, record_ts,
                       lengths_checked=True)


def decoder(options: Mapping[str, str] | None = None) -> RecordDecoder:
    ensure_options(FORMAT, options or {}, OPTIONS)
    return RecordDecoder(FORMAT, decode_openfeature, _fast, _FlatEvaluation)
