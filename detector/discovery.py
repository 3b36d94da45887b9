"""Discovery: what the detector has seen of each experiment, and draft registrations from it. Pure.

Used by `GET /v1/discovery` (JSON, `?format=csv`), by `detector discover [--all] [--write DIR]`
and by the `unregistered` digest (each listed experiment's exposure). No I/O, no clock.

Per experiment: distinct eligible and enrolled users, the enrolled fraction with a 95% Wilson
score interval, the variant split, the attribute values seen in a sample of the events
(`AttributeSample`), first and last event time. `draft_yaml` turns that into a registration a
human reviews: the observed exposure rounded up to a sensible declaration, with comments naming
what to check (owner; allowlist or fraction; segments; the split).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

Z95 = 1.959963984540054
SMALL_EXPERIMENT = 50  # at most this many enrolled users: probably a QA test on named accounts
ATTR_SAMPLE_PER_BATCH = 8  # events of each experiment's batch whose attributes are tallied
ATTR_MAX_KEYS = 16
ATTR_MAX_VALUES = 32


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval for a binomial proportion (None without trials)."""
    if trials <= 0:
        return None
    p = successes / trials
    z2 = z * z
    denom = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


class AttributeSample:
    """Attribute values seen per experiment, tallied over the first few events of each batch.

    Bounded (16 attributes x 32 values an experiment) and cheap (a handful of events per batch,
    whatever the batch size): discovery needs to know which segments exist, not exact counts.
    Held in memory by the worker; after a restart it fills again from new traffic.
    """

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, dict[str, int]]] = {}

    def add(self, experiment: str, events: Sequence[Any]) -> None:
        tally = None
        for e in events[:ATTR_SAMPLE_PER_BATCH]:
            attrs = e.attributes
            if not attrs:
                continue
            if tally is None:
                tally = self.seen.setdefault(experiment, {})
            for k, v in attrs.items():
                values = tally.get(k)
                if values is None:
                    if len(tally) >= ATTR_MAX_KEYS:
                        continue
                    values = tally[k] = {}
                v = str(v)
                if v in values:
                    values[v] += 1
                elif len(values) < ATTR_MAX_VALUES:
                    values[v] = 1

    def of(self, experiment: str) -> dict[str, dict[str, int]]:
        return self.seen.get(experiment, {})

    def forget(self, experiment: str) -> None:
        self.seen.pop(experiment, None)


@dataclass
class Exposure:
    """What was observed of one experiment."""

    experiment: str
    registered: bool
    owner: str | None
    events: int
    eligible_users: int
    enrolled_users: int
    fraction: float | None
    fraction_ci95: tuple[float, float] | None
    variants: dict[str, int]
    enrolled_without_variant: int
    segments_seen: dict[str, dict[str, int]]
    first_seen_at: int | None
    last_seen_at: int | None
    open_incidents: list[str] = field(default_factory=list)  # rules with an open incident

    @property
    def fraction_observable(self) -> bool:
        """False when the stream carries only enrolments (no evaluation without enrolment)."""
        return self.eligible_users > self.enrolled_users

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fraction_ci95"] = list(self.fraction_ci95) if self.fraction_ci95 else None
        d["fraction_observable"] = self.fraction_observable
        d["first_seen_at"] = _rfc3339(self.first_seen_at)
        d["last_seen_at"] = _rfc3339(self.last_seen_at)
        return d


def exposure_from_dict(d: Mapping[str, Any]) -> Exposure:
    """The inverse of `Exposure.to_dict` (what `GET /v1/discovery` answers)."""
    from detector.timestamps import parse_rfc3339

    def ms(v: Any) -> int | None:
        return None if v is None else parse_rfc3339(v)

    ci = d.get("fraction_ci95")
    return Exposure(
        experiment=str(d["experiment"]), registered=bool(d.get("registered")), owner=d.get("owner"),
        events=int(d.get("events") or 0), eligible_users=int(d.get("eligible_users") or 0),
        enrolled_users=int(d.get("enrolled_users") or 0), fraction=d.get("fraction"),
        fraction_ci95=(float(ci[0]), float(ci[1])) if ci else None,
        variants={str(k): int(v) for k, v in (d.get("variants") or {}).items()},
        enrolled_without_variant=int(d.get("enrolled_without_variant") or 0),
        segments_seen={str(k): {str(a): int(b) for a, b in v.items()} for k, v in (d.get("segments_seen") or {}).items()},
        first_seen_at=ms(d.get("first_seen_at")), last_seen_at=ms(d.get("last_seen_at")),
        open_incidents=list(d.get("open_incidents") or []),
    )


def exposure(state: Any, registration: Any = None, segments: Mapping[str, Mapping[str, int]] | None = None,
             open_rules: Iterable[str] = ()) -> Exposure:
    """The exposure of one experiment from its engine state (`ExperimentState`)."""
    n, s = int(state.n), int(state.s)
    ci = wilson_interval(s, n)
    return Exposure(
        experiment=state.experiment,
        registered=registration is not None,
        owner=getattr(registration, "owner", None),
        events=int(state.events),
        eligible_users=n,
        enrolled_users=s,
        fraction=round(s / n, 6) if n else None,
        fraction_ci95=(round(ci[0], 6), round(ci[1], 6)) if ci else None,
        variants=dict(sorted(state.variants.items())),
        enrolled_without_variant=int(state.variant_none),
        segments_seen={k: dict(sorted(v.items())) for k, v in sorted((segments or {}).items())},
        first_seen_at=state.first_ts,
        last_seen_at=state.last_ts,
        open_incidents=sorted(open_rules),
    )


def digest_entry(e: Exposure) -> dict[str, Any]:
    """The short form the `unregistered` digest lists per experiment."""
    return {"eligible_users": e.eligible_users, "enrolled_users": e.enrolled_users, "fraction": e.fraction,
            "variants": e.variants, "first_seen_at": _rfc3339(e.first_seen_at),
            "last_seen_at": _rfc3339(e.last_seen_at)}


CSV_COLUMNS = ("experiment", "registered", "owner", "events", "eligible_users", "enrolled_users", "fraction",
               "fraction_ci95_low", "fraction_ci95_high", "variants", "segments_seen", "first_seen_at",
               "last_seen_at", "open_incidents")


def _csv_cell(value: Any) -> Any:
    """Spreadsheet-safe text: a leading =, +, -, @ (formula) is quoted with an apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(rows: Iterable[Exposure]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for e in rows:
        lo, hi = e.fraction_ci95 or (None, None)
        w.writerow([_csv_cell(x) for x in (
            e.experiment, str(e.registered).lower(), e.owner or "", e.events, e.eligible_users, e.enrolled_users,
            "" if e.fraction is None else e.fraction, "" if lo is None else lo, "" if hi is None else hi,
            ";".join(f"{k}={v}" for k, v in e.variants.items()),
            ";".join(f"{k}={'|'.join(v)}" for k, v in e.segments_seen.items()),
            _rfc3339(e.first_seen_at) or "", _rfc3339(e.last_seen_at) or "", ";".join(e.open_incidents))])
    return buf.getvalue()


# ---- drafts ----------------------------------------------------------------------------------
def _nice_ceiling(x: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... (or 1.5, 3 steps between) at or above x."""
    if x <= 1:
        return 1
    mag = 10 ** math.floor(math.log10(x))
    for m in (1, 1.5, 2, 3, 5, 10):
        if m * mag >= x:
            return math.ceil(m * mag)
    return int(10 * mag)


def _fraction_grid(p: float) -> float:
    """The observed fraction rounded to a declaration a human would write (nearest step)."""
    step = 0.001 if p < 0.01 else 0.005 if p < 0.1 else 0.05
    return round(max(step, round(p / step) * step), 3)


def _split(variants: Mapping[str, int]) -> tuple[dict[str, float] | None, str]:
    """A declared split consistent with the observed counts, or None with the reason."""
    total = sum(variants.values())
    if not variants or total == 0:
        return None, "no variant was observed"
    k = len(variants)
    names = sorted(variants)
    for candidate in (
        {v: 1 / k for v in names},
        {v: round(variants[v] / total / 0.05) * 0.05 for v in names},
    ):
        s = sum(candidate.values())
        if s <= 0 or any(w <= 0 for w in candidate.values()):
            continue
        candidate = {v: w / s for v, w in candidate.items()}
        ok = all(abs(variants[v] / total - w) <= 4 * math.sqrt(w * (1 - w) / total) + 1e-9 for v, w in candidate.items())
        if ok:
            out = {v: round(w, 6) for v, w in candidate.items()}
            out[names[-1]] = round(1.0 - math.fsum(out[v] for v in names[:-1]), 6)  # sums to 1 exactly
            return out, ""
    shares = ", ".join(f"{v}={variants[v] / total:.3f}" for v in names)
    return None, f"the observed split ({shares}) is not close to a round one"


def draft(e: Exposure) -> tuple[dict[str, Any], list[str]]:
    """A registration for `e` (a mapping `detector register` accepts) and the review notes."""
    reg: dict[str, Any] = {"experiment": e.experiment}
    notes: list[str] = ["owner: who owns this experiment? (set `owner:`; digests and routes group by it)"]
    population: dict[str, Any] = {}
    if e.enrolled_users <= SMALL_EXPERIMENT:
        population["max_users"] = max(_nice_ceiling(e.enrolled_users * 1.5), 5)
        notes.append(f"allowlist vs max_users: {e.enrolled_users} enrolled users looks like a test on named "
                     "accounts; if so, list them under population.allowlist instead of max_users")
    elif e.fraction_observable and e.fraction is not None and e.fraction_ci95 is not None:
        declared = _fraction_grid(e.fraction)
        hi = e.fraction_ci95[1]
        tolerance = max(0.1, math.ceil(max(0.0, hi / declared - 1) / 0.05) * 0.05)
        population["fraction"] = declared
        reg["tolerance"] = round(tolerance, 2)
        notes.append(f"allowlist vs fraction: observed {e.fraction:.4f} of eligible users (95% CI "
                     f"{e.fraction_ci95[0]:.4f}-{hi:.4f}); declared {declared} with tolerance {tolerance:.2f}: "
                     "is that the intended rollout?")
    else:
        population["max_users"] = _nice_ceiling(e.enrolled_users * 2)
        notes.append("fraction cannot be checked: the stream carries no evaluation without enrolment; "
                     f"max_users is a ceiling at about twice today's {e.enrolled_users} enrolled users")
    reg["population"] = population
    split, why = _split(e.variants)
    if split is not None and len(split) > 1:
        reg["variants"] = split
    elif why and e.variants:
        notes.append(f"variants: {why}; declare the intended split to check for sample ratio mismatch")
    for attr, values in e.segments_seen.items():
        if len(values) == 1:
            (only,) = values
            notes.append(f"segments: every sampled event had {attr}={only}; if the experiment targets it, "
                         f"add population.segments: {{{attr}: [{only}]}}")
    reg["severity"] = "warning"
    reg["description"] = (f"Drafted by detector discover from {e.events} events "
                          f"({_rfc3339(e.first_seen_at)} to {_rfc3339(e.last_seen_at)}): "
                          f"{e.enrolled_users} of {e.eligible_users} eligible users enrolled")
    return reg, notes


def draft_yaml(e: Exposure) -> str:
    """The draft as a YAML document with the review notes as comments on top."""
    import yaml

    reg, notes = draft(e)
    head = [f"# Draft registration for {e.experiment}, from what the detector observed. REVIEW before registering:"]
    head += [f"#  - {n}" for n in notes]
    head.append("# Observed: " + ", ".join(f"{k}={v}" for k, v in digest_entry(e).items() if k != "variants")
                + (f", variants={e.variants}" if e.variants else ""))
    head.append("# Add `mode: observe` to record breaches without paging while you check the declaration.")
    return "\n".join(head) + "\n" + yaml.safe_dump(reg, sort_keys=False, default_flow_style=False)


def _rfc3339(ms: int | None) -> str | None:
    from detector.timestamps import rfc3339

    return rfc3339(ms)
