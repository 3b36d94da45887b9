"""What every source decoder shares: the batch loop, the native limits, identity options.

A format module defines a msgspec wire struct (what its platform sends; unknown fields are
skipped in C) and, for a source's options, a `convert(wire, record_ts_ms)` function that maps one decoded wire
struct to an `Assignment` or raises `Reject`. `StructDecoder` runs them over a whole fetch:

* fast path: every value decoded with msgspec (`map` over the batch, no Python per record
  except `convert`), each result checked against the native limits (`assignment`);
* a value msgspec refuses (not JSON, a field of the wrong type) is decoded again into the
  format's loose envelope to tell a malformed exposure (dead-lettered, with msgspec's
  reason and path) from a valid event of the platform that is not an exposure (counted
  as `not_exposure`, never dead-lettered).

Nothing here raises on any input: the decoders are fuzzed with arbitrary bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Annotated, Any

import msgspec
import numpy as np
import orjson

from detector.timestamps import datetime_ms
from detector.events import (
    MAX_ATTRIBUTES,
    MAX_EVENT_AGE_MS,
    MAX_FUTURE_SKEW_MS,
    MAX_ID_CHARS,
    MAX_TS_MS,
    MAX_VALUE_BYTES,
    Assignment,
    Rejected,
)

NOT_EXPOSURE = "not_exposure"  # a valid event of the platform that is not an exposure: counted, skipped
NO_IDENTITY = "no_identity"  # an exposure without the identity the source is configured for: counted, skipped
SKIPPED_KINDS = frozenset({NOT_EXPOSURE, NO_IDENTITY})

_first = itemgetter(0)
FAST_BLOCK = 512  # records per block of the columnar fast path (see _Blocks.decode_batch)
FAST_BACKOFF = 32  # most blocks taken per record after the fast path failed (see _Blocks)
Batch = tuple[list[Assignment], "list[int] | None", list[tuple[int, Rejected]]]


class Reject(Exception):
    """Raised inside a converter; becomes a `Rejected` with this reason and kind."""

    def __init__(self, reason: str, kind: str = "invalid_field") -> None:
        super().__init__(reason)
        self.reason, self.kind = reason, kind


@dataclass(frozen=True)
class Options:
    """A source's options from DETECTOR_SOURCES (`identity=...`, `context_kind=...`)."""

    values: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str, default: str) -> str:
        return self.values.get(name, default)


def epoch_ms(value: Any, field_name: str, default_ms: int) -> int:
    """Epoch ms from a msgspec-decoded datetime (RFC 3339), epoch ms number, or None (-> default)."""
    if value.__class__ is int:
        return value
    if value is None:
        return default_ms
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise Reject(f"invalid {field_name}: no time zone offset", "invalid_ts")
        return datetime_ms(value)
    if isinstance(value, bool):
        raise Reject(f"invalid {field_name}: {value!r}", "invalid_ts")
    if isinstance(value, float) and not math.isfinite(value):
        raise Reject(f"invalid {field_name}: not finite", "invalid_ts")
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):  # RFC 3339 text that msgspec could not type (loose envelopes)
        try:
            dt = datetime.fromisoformat(value if value[-1:] == "Z" else value.replace("z", "+00:00"))
        except ValueError:
            raise Reject(f"invalid {field_name}: {value[:40]!r} is not an RFC 3339 time", "invalid_ts") from None
        return epoch_ms(dt, field_name, default_ms)
    raise Reject(f"invalid {field_name}: {type(value).__name__}", "invalid_ts")


def ident(value: Any) -> str | None:
    """An id field as text: strings as they are, integers as their decimal text, else None."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def load_object(value: bytes | None, what: str) -> dict[str, Any]:
    """A JSON object within the native size limit (for the per-record decoders), else Reject."""
    if value is None:
        raise Reject("empty value (tombstone)", "empty")
    if len(value) > MAX_VALUE_BYTES:
        raise Reject(f"value of {len(value)} bytes exceeds {MAX_VALUE_BYTES}", "too_large")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise Reject(f"invalid {what}: not JSON: {exc}", "invalid_json") from None
    if not isinstance(doc, dict):
        raise Reject(f"invalid {what}: expected a JSON object, got {type(doc).__name__}", "invalid_json")
    return doc


def text(value: Any, field_name: str, *, required: bool = False) -> str | None:
    """A string field; integers are accepted as their decimal text (ids often are numbers)."""
    if value is None or value == "":
        if required:
            raise Reject(f"missing {field_name}")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Reject(f"{field_name} must be a string, got {type(value).__name__}")
    s = str(value)
    if len(s) > MAX_ID_CHARS:
        raise Reject(f"{field_name} longer than {MAX_ID_CHARS} characters")
    if "\x00" in s:
        raise Reject(f"NUL byte in {field_name}")
    return s


def require_kind(value: Any, allowed: frozenset, what: str, field_name: str) -> None:
    """The event's discriminator: missing -> a malformed event; another value -> not an exposure."""
    if value is None:
        raise Reject(f"not a {what} event: no {field_name}")
    if value not in allowed:
        raise Reject(f"{what} {field_name} {str(value)[:60]!r} is not an exposure", NOT_EXPOSURE)


def country_platform(country: str | None, platform: str | None) -> dict[str, str] | None:
    """The two segment attributes most platforms carry (platform in lower case), or None."""
    if not country and not platform:
        return None
    out = {}
    if country:
        out["country"] = country
    if platform:
        out["platform"] = platform.lower()
    return out


def required_text(value: Any, field_name: str) -> str:
    """A required string field (see `text`), else Reject."""
    s = text(value, field_name)
    if s is None:
        raise Reject(f"missing {field_name}")
    return s


def scalar_text(value: Any) -> str | None:
    """A flag value as a variant name: strings, booleans ("true"/"false") and numbers; else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and not (isinstance(value, float) and not math.isfinite(value)):
        return str(value)
    return None


def scalar_attributes(pairs, out: dict[str, str] | None = None) -> dict[str, str]:
    """Flat string attributes from (key, value) pairs: scalars only, first MAX_ATTRIBUTES keys."""
    out = {} if out is None else out
    for k, v in pairs:
        if len(out) >= MAX_ATTRIBUTES:
            break
        if v is None or isinstance(v, (dict, list)) or not isinstance(k, str) or not k or k in out:
            continue
        s = scalar_text(v)
        if s is not None and len(s) <= MAX_ID_CHARS and len(k) <= MAX_ID_CHARS and "\x00" not in s + k:
            out[k] = s
    return out


def assignment(experiment: str, user: str, variant: str | None, enrolled: bool, ts: int,
               attributes: dict[str, str] | None = None) -> Assignment:
    """The one internal shape (checked against the native limits by `validate`, per batch)."""
    return Assignment(experiment, user, variant if enrolled else None, enrolled, ts, attributes or None)


def check(ev: Assignment, record_ts_ms: int) -> None:
    """The native decoder's limits for one assignment (raises Reject)."""
    if not isinstance(ev.experiment, str) or not 0 < len(ev.experiment) <= MAX_ID_CHARS or "\x00" in ev.experiment:
        raise Reject("experiment (flag key) must be a non-empty string of at most 256 characters without NUL")
    if not isinstance(ev.user_id, str) or not 0 < len(ev.user_id) <= MAX_ID_CHARS or "\x00" in ev.user_id:
        raise Reject("user id must be a non-empty string of at most 256 characters without NUL")
    if ev.variant is not None and (len(ev.variant) > MAX_ID_CHARS or "\x00" in ev.variant):
        raise Reject("variant longer than 256 characters or with a NUL byte")
    ts = ev.ts
    if not 0 <= ts <= MAX_TS_MS:
        raise Reject(f"ts {ts} is outside 1970..9999", "invalid_ts")
    if record_ts_ms > 0 and not record_ts_ms - MAX_EVENT_AGE_MS <= ts <= record_ts_ms + MAX_FUTURE_SKEW_MS:
        raise Reject(f"ts {ts} is too far from its record time {record_ts_ms}", "invalid_ts")


_experiment, _user, _variant, _ts = (attrgetter(n) for n in ("experiment", "user_id", "variant", "ts"))


def _batch_ok(events: list[Assignment], stamps: list[int]) -> bool:
    """True when every assignment passes `check`, proven with C-level passes over the batch."""
    return limits_ok(list(map(_experiment, events)), list(map(_user, events)), list(map(_variant, events)),
                     list(map(_ts, events)), stamps)


def validate(events: list[Assignment], positions: list[int], values: list, record_ts: list[int],
             rejects: list[tuple[int, Rejected]]) -> tuple[list[Assignment], list[int]]:
    """Keep the assignments within the native limits; the others join `rejects` (position order)."""
    if not events:
        return events, positions
    stamps = [record_ts[i] for i in positions] if len(positions) != len(record_ts) else record_ts
    if _batch_ok(events, stamps):
        return events, positions
    kept, kept_pos = [], []
    for ev, i, rt in zip(events, positions, stamps):
        try:
            check(ev, rt)
        except Reject as exc:
            rejects.append((i, Rejected(exc.reason, values[i], exc.kind)))
            continue
        kept.append(ev)
        kept_pos.append(i)
    rejects.sort(key=_first)
    return kept, kept_pos


_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError, OverflowError)


def _one(decoder, value: bytes | None, record_ts_ms: int) -> Assignment | Rejected:
    events, _, rejects = decoder.decode_batch([value], [record_ts_ms])
    return events[0] if events else rejects[0][1]


class _Blocks:
    """The batch loop shared by the decoders: the columnar fast path by blocks, else `_per_record`.

    `_fast(wires, record_ts, values)` (or None: no fast path) maps a block of structs decoded by
    `_fast_decode` from `values` to assignments, or returns None when it cannot prove a record decodes as
    `_per_record` would decode it.
    """

    format: str
    _fast: Callable[[list, list[int], list], list[Assignment] | None] | None = None
    _fast_decode: Callable[[bytes], Any] | None = None
    # After a block the fast path could not prove, the next `_skip` blocks go straight to the
    # per-record path, doubling up to FAST_BACKOFF blocks while blocks keep failing (a topic
    # shared with other events would otherwise pay the fast wire's parse for nothing); one
    # block that the fast path proves resets it.
    _skip = 0
    _backoff = 0

    def decode_one(self, value: bytes | None, record_ts_ms: int = 0) -> Assignment | Rejected:
        """One record (the signature of `detector.events.decode`). Never raises."""
        return _one(self, value, record_ts_ms)

    def _per_record(self, values: list, record_ts: list[int]) -> Batch:
        raise NotImplementedError

    def decode_batch(self, values: list, record_ts: list[int]) -> Batch:
        """(events, positions or None when every record decoded, [(position, Rejected)]). Never raises.

        With a fast path, the batch is taken in blocks of FAST_BLOCK records (the wire structs
        of a block stay in the CPU cache across the column passes); a block the fast path
        cannot prove goes through the per-record path alone.
        """
        n = len(values)
        if self._fast is None or not n:
            return self._per_record(values, record_ts)
        if n <= FAST_BLOCK:
            whole = self._try_fast(values, record_ts)
            return (whole, None, []) if whole is not None else self._per_record(values, record_ts)
        events: list[Assignment] = []
        positions: list[int] = []
        rejects: list[tuple[int, Rejected]] = []
        for lo in range(0, n, FAST_BLOCK):
            vals, stamps = values[lo:lo + FAST_BLOCK], record_ts[lo:lo + FAST_BLOCK]
            fast = self._try_fast(vals, stamps)
            if fast is not None:
                events.extend(fast)
                positions.extend(range(lo, lo + len(vals)))
                continue
            slow, where, bad = self._per_record(vals, stamps)
            events.extend(slow)
            positions.extend(range(lo, lo + len(vals)) if where is None else [lo + i for i in where])
            rejects.extend((lo + i, r) for i, r in bad)
        return events, (None if not rejects else positions), rejects

    def _try_fast(self, values: list, record_ts: list[int]) -> list[Assignment] | None:
        """The block decoded by the columnar fast path, or None (the per-record path decides)."""
        if self._skip:
            self._skip -= 1
            return None
        events = self._fast_block(values, record_ts)
        if events is None:
            self._skip = self._backoff = min(2 * self._backoff + 1, FAST_BACKOFF)
        else:
            self._backoff = 0
        return events

    def _fast_block(self, values: list, record_ts: list[int]) -> list[Assignment] | None:
        fast, decode = self._fast, self._fast_decode
        if fast is None or decode is None or None in values:
            return None
        try:
            if max(map(len, values)) > MAX_VALUE_BYTES:
                return None
            return fast(list(map(decode, values)), record_ts, values)
        except Exception:  # noqa: BLE001 - malformed JSON, or a shape it did not foresee
            return None


class StructDecoder(_Blocks):
    """Batch decoder of one format: msgspec wire struct + converter (see the module docstring).

    `envelope` is a loose struct (every field optional, any type) and `is_exposure(envelope)`
    says whether a record msgspec refused was meant to be an exposure of this format (a record
    without the format's discriminating field counts as one: it is malformed, not another event).
    """

    def __init__(self, format: str, wire: type, convert: Callable[[Any, int], Assignment],
                 envelope: type, is_exposure: Callable[[Any], bool],
                 fast: Callable[[list, list[int], list], list[Assignment] | None] | None = None,
                 fast_wire: type | None = None) -> None:
        self.format = format
        self._decode: Callable[[bytes], Any] = msgspec.json.Decoder(wire).decode
        self._envelope: Callable[[bytes], Any] = msgspec.json.Decoder(envelope).decode
        self._is_exposure = is_exposure
        self._convert = convert
        self._fast = fast
        self._fast_decode: Callable[[bytes], Any] | None = (
            None if fast is None else self._decode if fast_wire in (None, wire)
            else msgspec.json.Decoder(fast_wire).decode)

    def _per_record(self, values: list, record_ts: list[int]) -> Batch:
        """Every record through `convert` (a msgspec-refused record told apart by its envelope)."""
        if not values:
            return [], None, []
        wires = None
        if None not in values:
            try:
                if max(map(len, values)) <= MAX_VALUE_BYTES:
                    wires = list(map(self._decode, values))
            except _ERRORS:
                wires = None
        if wires is None:
            wires = [self._wire_or_rejected(v) for v in values]
        convert = self._convert
        rejects: list[tuple[int, Rejected]] = []
        try:  # every record an exposure of the right shape (a topic of exposures only): no Python loop
            events = list(map(convert, wires, record_ts))
        except Exception:  # noqa: BLE001 - some record needs the per-record loop below
            pass
        else:
            positions = list(range(len(values)))
            events, positions = validate(events, positions, values, record_ts, rejects)
            return events, (None if not rejects else positions), rejects
        events = []
        positions = []
        for i, (w, rt) in enumerate(zip(wires, record_ts)):
            if w.__class__ is Rejected:
                rejects.append((i, w))
                continue
            try:
                events.append(convert(w, rt))
                positions.append(i)
            except Reject as exc:
                rejects.append((i, Rejected(exc.reason, values[i], exc.kind)))
            except Exception as exc:  # noqa: BLE001 - a converter bug must not stop the batch
                rejects.append((i, Rejected(f"could not convert {self.format} event: {exc!r}"[:500], values[i])))
        events, positions = validate(events, positions, values, record_ts, rejects)
        return events, (None if not rejects else positions), rejects

    def _wire_or_rejected(self, value: bytes | None):
        if value is None:
            return Rejected("empty value (tombstone)", value, "empty")
        if len(value) > MAX_VALUE_BYTES:
            return Rejected(f"value of {len(value)} bytes exceeds {MAX_VALUE_BYTES}", value, "too_large")
        try:
            return self._decode(value)
        except (msgspec.ValidationError, OverflowError) as exc:  # (ValidationError is a DecodeError)
            error = exc
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            return Rejected(f"invalid {self.format} event: {exc}"[:500], value, "invalid_json")
        try:  # valid JSON, not of the exposure's shape: is it an exposure at all?
            exposure = self._is_exposure(self._envelope(value))
        except _ERRORS:
            exposure = False
        except Exception:  # noqa: BLE001
            exposure = True
        if not exposure:
            return Rejected(f"not a {self.format} exposure event", value, NOT_EXPOSURE)
        kind = "invalid_ts" if "datetime" in str(error) or "timestamp" in str(error).lower() else "invalid_field"
        return Rejected(f"invalid {self.format} exposure: {error}"[:500], value, kind)


class RecordDecoder(_Blocks):
    """Batch interface over a per-record decoder (formats whose shapes need a dict walk), with an
    optional columnar fast path for the common shape (`fast` over structs of `fast_wire`)."""

    def __init__(self, format: str, decode_one: Callable[[bytes | None, int], Assignment | Rejected],
                 fast: Callable[[list, list[int], list], list[Assignment] | None] | None = None,
                 fast_wire: type | None = None) -> None:
        self.format = format
        self._decode_one = decode_one
        self._fast = fast
        self._fast_decode = None if fast_wire is None else msgspec.json.Decoder(fast_wire).decode

    def _per_record(self, values: list, record_ts: list[int]) -> Batch:
        events: list[Assignment] = []
        positions: list[int] = []
        rejects: list[tuple[int, Rejected]] = []
        decode_one = self._decode_one
        for i, (v, rt) in enumerate(zip(values, record_ts)):
            ev = decode_one(v, rt)
            if isinstance(ev, Rejected):
                rejects.append((i, ev))
            else:
                events.append(ev)
                positions.append(i)
        events, positions = validate(events, positions, values, record_ts, rejects)
        return events, (None if not rejects else positions), rejects


def ensure_options(format: str, options: Mapping[str, str], allowed: Mapping[str, tuple[str, ...] | None]) -> Options:
    """Validate a source's options: known names, and values among the allowed ones (None: any)."""
    problems = []
    for k, v in options.items():
        if k not in allowed:
            problems.append(f"unknown option {k!r} for {format} (known: {', '.join(sorted(allowed)) or 'none'})")
            continue
        choices = allowed[k]
        if choices is not None and v not in choices and not any(c.endswith(":") and v.startswith(c) for c in choices):
            problems.append(f"{format} option {k}={v!r}: use one of {', '.join(choices)}")
        if not v:
            problems.append(f"{format} option {k} is empty")
    if problems:
        raise ValueError("; ".join(problems))
    return Options(dict(options))


# ---- columnar fast path ---------------------------------------------------------------------
# A format may give its decoder a `fast(wires, record_ts, values)` function: it maps a whole batch of
# wire structs to assignments with C-level passes over columns (attrgetter maps, list.count,
# numpy), and returns None as soon as one record is not of the common shape it proves it handles
# exactly as `convert` would; the decoder then takes the per-record path for that chunk. The
# helpers below are its building blocks; each returns None when it cannot prove equality.

def column(name: str) -> Callable[[list], list]:
    """A function from a list of structs to the list of their `name` attributes (one C pass)."""
    get = attrgetter(name)
    return lambda structs: list(map(get, structs))


def texts(col: list) -> list | None:
    """`ident` over a column of str (or None) values: "" -> None. None when another type occurs."""
    if not col:
        return col
    types = set(map(type, col))
    if types <= {str}:
        return [v or None for v in col] if "" in col else col
    if types <= {str, type(None)}:
        return [v or None for v in col]
    return None


def present(col: list) -> bool:
    """True when no value of the column is None or empty ("" / 0 / False)."""
    return all(col)


def _layout(form: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (lowest, highest) byte of a time of `form` (9 = a digit) and its NUL separator."""
    lo = [48 if c == "9" else ord(c) for c in form] + [0]
    hi = [57 if c == "9" else ord(c) for c in form] + [0]
    return np.array(lo, np.uint8), np.array(hi, np.uint8)


_LAYOUTS = {len(f): _layout(f) for f in ("9999-99-99T99:99:99Z", "9999-99-99T99:99:99.999Z",
                                         "9999-99-99T99:99:99.999999Z")}


def rfc3339_ms(col: list[str]) -> list[int] | None:
    """Epoch ms of a column of UTC RFC 3339 times of one fixed form, in numpy; None otherwise.

    Accepted: `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]Z` (what the platforms' exporters write), every
    string the same length. The layout is checked here: joined with NUL after each, every row of
    width + 1 bytes must be digits and separators where the form has them and NUL last (so each
    string is exactly that long); numpy's ISO parser checks the calendar (it raises on a day,
    hour, minute or second out of range, as msgspec does). The result equals msgspec's datetime
    decoding followed by `epoch_ms`, fractions below the millisecond truncated, for every year
    msgspec accepts (numpy also reads year 0: `limits_ok` refuses its negative ms).
    """
    n = len(col)
    if not n:
        return []
    width = len(col[0])
    layout = _LAYOUTS.get(width)
    if layout is None:
        return None
    try:
        buf = bytearray(("\x00".join(col) + "\x00").encode("ascii"))
    except UnicodeEncodeError:
        return None
    if len(buf) != n * (width + 1):
        return None
    a = np.frombuffer(buf, np.uint8).reshape(n, width + 1)
    lo, hi = layout
    if (a < lo).any() or (a > hi).any():
        return None
    a[:, width - 1] = 0  # the Z: numpy reads the rest (NUL-padded) as a naive UTC time
    try:
        ms = a.view(f"S{width + 1}").ravel().astype("datetime64[ms]")
    except ValueError:
        return None
    return ms.view(np.int64).tolist()


def times_ms(col: list, record_ts: list[int]) -> list[int] | None:
    """`epoch_ms` over a column decoded as `str | int | None` (None -> the record time).

    Strings must be of `rfc3339_ms`'s form; None when one is not (the per-record path decides).
    """
    types = set(map(type, col))
    if types == {str}:
        return rfc3339_ms(col)
    if types == {int}:
        return col
    if types == {type(None)}:
        return record_ts
    if not types <= {str, int, type(None)}:
        return None
    parsed_strs = rfc3339_ms([v for v in col if v.__class__ is str])
    if parsed_strs is None:
        return None
    parsed = iter(parsed_strs)
    try:
        return [v if v.__class__ is int else (r if v is None else next(parsed)) for v, r in zip(col, record_ts)]
    except StopIteration:
        return None


# Wire-struct field types for the fast path: msgspec checks the native length limits while it
# parses (a longer or empty value fails the fast wire; the per-record path then decides).
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)]
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=MAX_TS_MS)]


def limits_ok(experiments: list[str], users: list[str], variants: list, ts: list[int], record_ts: list[int],
              *, lengths_checked: bool = False) -> bool:
    """True when every row is within the native limits (`check`), proven with C-level passes.

    `lengths_checked`: the caller guarantees every experiment and user is 1..256 characters and
    every variant at most 256 (their wire fields are `Id` / `Text`), so only NULs and times are left.
    """
    if not experiments:
        return True
    strings = variants if None not in variants else [v for v in variants if v is not None]
    if not lengths_checked and (
            min(map(len, experiments)) == 0 or min(map(len, users)) == 0
            or max(map(len, experiments)) > MAX_ID_CHARS or max(map(len, users)) > MAX_ID_CHARS
            or (strings and max(map(len, strings)) > MAX_ID_CHARS)):
        return False
    if "\x00" in "\x01".join(experiments) or "\x00" in "\x01".join(users) or "\x00" in "\x01".join(strings):
        return False
    try:
        t = np.fromiter(ts, np.int64, len(ts))
        r = np.fromiter(record_ts, np.int64, len(ts))
    except (OverflowError, ValueError, TypeError):
        return False
    if t.min() < 0 or t.max() > MAX_TS_MS:
        return False
    d = (t - r)[r > 0]
    return not d.size or (d.min() >= -MAX_EVENT_AGE_MS and d.max() <= MAX_FUTURE_SKEW_MS)


def assignments(experiments: list, users: list, variants: list, enrolled: list, ts: list,
                attributes: list | None, record_ts: list[int], *, lengths_checked: bool = False
                ) -> list[Assignment] | None:
    """Build the batch's assignments (as `assignment` does per row) when `limits_ok`, else None.

    `variants` must already be None where not enrolled, and `attributes` None where empty.
    """
    if not limits_ok(experiments, users, variants, ts, record_ts, lengths_checked=lengths_checked):
        return None
    if attributes is None:
        return list(map(Assignment, experiments, users, variants, enrolled, ts))
    return list(map(Assignment, experiments, users, variants, enrolled, ts, attributes))


def cached(fn: Callable[..., Any], *cols: list) -> list:
    """`fn(*row)` for every row of the columns, computed once per distinct row.

    Rows with equal values share one result object: the attribute dicts of a batch are shared
    between its assignments (nothing downstream mutates an assignment's attributes).
    """
    keys: list = list(zip(*cols)) if len(cols) > 1 else cols[0]
    table = dict.fromkeys(keys)
    for k in table:
        table[k] = fn(*k) if len(cols) > 1 else fn(k)
    return list(map(table.__getitem__, keys))


def either(first: list, second: list) -> list:
    """`a or b` row by row (the first column's empty values fall back to the second's)."""
    return first if all(first) else [a or b for a, b in zip(first, second)]


def enrolled_only(variants: list, enrolled: list) -> list:
    """The variant where enrolled, None elsewhere (what `assignment` stores)."""
    return variants if False not in enrolled else [v if e else None for v, e in zip(variants, enrolled)]


RawObject = msgspec.Raw  # a free-form attribute object, kept as its JSON text by the fast wire
NO_OBJECT = msgspec.Raw(b"null")  # its default: absent
_free_form = msgspec.json.Decoder(dict[str, Any] | None).decode


def attributes_of(raws: list) -> list:
    """`scalar_attributes(d.items()) or None` for a column of raw JSON objects (`RawObject`),
    decoded as the wire's `dict[str, Any] | None` once per distinct text (a non-object raises)."""
    keys = list(map(bytes, raws))
    table = dict.fromkeys(keys)
    for k in table:
        d = _free_form(k)
        table[k] = scalar_attributes(d.items()) or None if d else None
    return list(map(table.__getitem__, keys))


def only_known_keys(values: list[bytes], texts: list[list], scalars: list[list]) -> bool:
    """True when the JSON objects in `values` hold no key but the decoded fields, once each.

    Each column holds one field of the struct they were decoded into, None where absent: `texts`
    fields are strings, `scalars` fields strings or other scalars. Without a backslash in the
    batch every JSON string has exactly two quotes; each field present accounts for its key, plus
    its value when that is a string, so any other key (or a repeated one, or a JSON null, which
    decodes as absent) makes the count differ.
    """
    buf = b"".join(values)
    if b"\\" in buf:
        return False
    n = len(values)
    strings = 0
    for col in texts:
        strings += 2 * (n if all(col) else n - col.count(None))
    for col in scalars:
        types = list(map(type, col))
        strings += n - types.count(type(None)) + types.count(str)
    return buf.count(b'"') == 2 * strings
