"""Which registration changes are risky enough to need an explicit `?confirm=true` (`--confirm`).

Pure functions: no I/O, no clock (pass `now_ms` to enable the time-based check). The incident
behind this project was a confusing registration with no confirmation step, so a change that
looks like a typo or a contradiction is held back with an explanation instead of applied.

Risk codes (stable; tools may match on them):
- `allowlist_with_large_fraction`: an allowlist together with fraction >= 0.5. An allowlist
  means "these test accounts only"; a fraction that large means "half of all traffic".
- `large_max_users_with_allowlist`: max_users above 1,000,000 together with an allowlist.
- `max_users_below_observed`: the experiment already has more than 10x max_users distinct users.
- `fraction_below_observed`: the observed fraction is more than 10x the declared fraction.
- `widened_max_users` / `widened_fraction`: the declared population grows more than tenfold in one
  change (a ramp from 1% to 50% should be a conscious step).
- `window_already_ended`: ends_at is in the past, so every assignment will be out of window.
- `test_only_with_wide_population`: the description or key says QA / test / internal / dogfood,
  yet the population is a large fraction (>= 0.5) or has no allowlist and no max_users (the
  incident behind this project: "QA, test accounts only" set live for everyone).
- `allowlist_dropped`: an experiment that had an allowlist gets a population without one.
- `delete_with_traffic`: deleting the registration of an experiment that receives traffic (it
  will then alert as `unregistered`, and its declared limits are no longer checked).
"""

from __future__ import annotations

import numbers
import re
from dataclasses import asdict, dataclass
from typing import Any

from detector.registration.compiled import CompiledRegistration
from detector.registration.model import registration_to_dict

LARGE_FRACTION_WITH_ALLOWLIST = 0.5
LARGE_MAX_USERS = 1_000_000
BELOW_OBSERVED_FACTOR = 10
WIDENING_FACTOR = 10
DIFF_LIST_LIMIT = 100  # allowlist diffs larger than this are summarised


@dataclass(frozen=True)
class Risk:
    code: str
    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _enrolled(observed: dict[str, Any] | None) -> int | None:
    if not observed:
        return None
    value = observed.get("enrolled_users", observed.get("distinct_users"))
    return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else None


def _observed_fraction(observed: dict[str, Any] | None) -> float | None:
    if not observed:
        return None
    value = observed.get("observed_fraction")
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return None


def has_traffic(observed: dict[str, Any] | None) -> bool:
    if not observed:
        return False
    enrolled = _enrolled(observed)
    eligible = observed.get("eligible_users")
    if enrolled is None and not isinstance(eligible, numbers.Integral):
        return True  # an observation without counts still means events arrived
    return bool(enrolled) or bool(eligible)


def assess(
    old: CompiledRegistration | None,
    new: CompiledRegistration | None,
    observed: dict[str, Any] | None,
    *,
    now_ms: int | None = None,
) -> list[Risk]:
    """Risks of replacing `old` by `new` (None = absent/deleted), given the current observation
    of the experiment (`RegistrationService.observation`, None when it has no traffic)."""
    risks: list[Risk] = []
    if new is None:
        if old is not None and has_traffic(observed):
            enrolled = _enrolled(observed)
            users = f"{enrolled} enrolled users" if enrolled is not None else "traffic"
            risks.append(
                Risk(
                    "delete_with_traffic",
                    "experiment",
                    f"{old.experiment} is receiving traffic ({users}); after deletion its assignments "
                    "alert as 'unregistered' and its declared limits are no longer checked",
                )
            )
        return risks

    if new.allowlist is not None and new.fraction is not None and new.fraction >= LARGE_FRACTION_WITH_ALLOWLIST:
        risks.append(
            Risk(
                "allowlist_with_large_fraction",
                "population.fraction",
                f"an allowlist of {len(new.allowlist)} users together with fraction {new.fraction:g} "
                f"(>= {LARGE_FRACTION_WITH_ALLOWLIST:g}): an allowlist means test accounts only, the "
                "fraction means a large share of all traffic; is the fraction a typo?",
            )
        )
    if new.allowlist is not None and new.max_users is not None and new.max_users > LARGE_MAX_USERS:
        risks.append(
            Risk(
                "large_max_users_with_allowlist",
                "population.max_users",
                f"max_users {new.max_users} (> {LARGE_MAX_USERS}) together with an allowlist of "
                f"{len(new.allowlist)} users; is max_users a typo?",
            )
        )

    if _says_test_only(new) and new.allowlist is None and (
        (new.fraction is not None and new.fraction >= LARGE_FRACTION_WITH_ALLOWLIST)
        or (new.fraction is None and new.max_users is None)
    ):
        what = (f"fraction {new.fraction:g}" if new.fraction is not None else "no allowlist and no max_users")
        risks.append(
            Risk(
                "test_only_with_wide_population",
                "population",
                f"the registration says it is for QA / test accounts, but declares {what}: "
                "a test should name its accounts (allowlist) or a small max_users",
            )
        )
    if old is not None and old.allowlist is not None and new.allowlist is None:
        risks.append(
            Risk(
                "allowlist_dropped",
                "population.allowlist",
                f"the allowlist of {len(old.allowlist)} users is removed: the experiment is no longer "
                "limited to named accounts",
            )
        )

    enrolled = _enrolled(observed)
    if new.max_users is not None and enrolled is not None and enrolled > BELOW_OBSERVED_FACTOR * new.max_users:
        risks.append(
            Risk(
                "max_users_below_observed",
                "population.max_users",
                f"the experiment already has {enrolled} distinct enrolled users, more than "
                f"{BELOW_OBSERVED_FACTOR}x the declared max_users {new.max_users}; this will alert at once",
            )
        )
    fraction = _observed_fraction(observed)
    if new.fraction is not None and fraction is not None and fraction > BELOW_OBSERVED_FACTOR * new.fraction:
        risks.append(
            Risk(
                "fraction_below_observed",
                "population.fraction",
                f"the experiment already receives a fraction {fraction:.4g} of eligible traffic, more than "
                f"{BELOW_OBSERVED_FACTOR}x the declared fraction {new.fraction:g}; this will alert at once",
            )
        )

    if old is not None:
        if old.max_users is not None and new.max_users is not None and new.max_users > WIDENING_FACTOR * max(
            old.max_users, 1
        ):
            risks.append(
                Risk(
                    "widened_max_users",
                    "population.max_users",
                    f"max_users grows from {old.max_users} to {new.max_users} (more than {WIDENING_FACTOR}x) "
                    "in one change",
                )
            )
        if old.fraction is not None and new.fraction is not None and new.fraction > WIDENING_FACTOR * old.fraction:
            risks.append(
                Risk(
                    "widened_fraction",
                    "population.fraction",
                    f"fraction grows from {old.fraction:g} to {new.fraction:g} (more than {WIDENING_FACTOR}x) "
                    "in one change",
                )
            )

    if now_ms is not None and new.ends_at is not None and new.ends_at <= now_ms:
        risks.append(
            Risk(
                "window_already_ended",
                "ends_at",
                "ends_at is in the past: every assignment from now on is outside the window",
            )
        )
    return risks


_TEST_ONLY = re.compile(r"(?<![a-z])(qa|test accounts?|test users?|testing|internal|dogfood(ing)?|allowlisted)(?![a-z])",
                        re.IGNORECASE)


def _says_test_only(e: CompiledRegistration) -> bool:
    return bool(_TEST_ONLY.search(e.description or "") or _TEST_ONLY.search(e.experiment.replace("-", " ").replace("_", " ")))


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value and prefix not in ("variants", "labels", "population.segments"):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, sub, out)
    else:
        out[prefix] = value


def flat(e: CompiledRegistration | None) -> dict[str, Any]:
    """Canonical form flattened to dotted fields (`population.max_users`); {} for None."""
    out: dict[str, Any] = {}
    if e is not None:
        _flatten("", registration_to_dict(e), out)
    return out


def diff(old: CompiledRegistration | None, new: CompiledRegistration | None) -> list[dict[str, Any]]:
    """Field-level changes `{field, old, new}` (None = absent), in canonical field order.

    Allowlist changes also carry `added` / `removed`; when either side is longer than
    DIFF_LIST_LIMIT entries, `old`/`new` hold `{"count": n}` and the id lists are truncated to
    that limit (`added_count` / `removed_count` give the totals)."""
    a, b = flat(old), flat(new)
    fields = list(b) + [f for f in a if f not in b]
    order = {name: i for i, name in enumerate(_FIELD_ORDER)}
    fields.sort(key=lambda f: order.get(f, len(order)))
    changes = []
    for field in fields:
        before, after = a.get(field), b.get(field)
        if before == after:
            continue
        entry: dict[str, Any] = {"field": field, "old": before, "new": after}
        if field == "population.allowlist":
            old_ids, new_ids = set(before or ()), set(after or ())
            added, removed = sorted(new_ids - old_ids), sorted(old_ids - new_ids)
            entry["added_count"], entry["removed_count"] = len(added), len(removed)
            entry["added"], entry["removed"] = added[:DIFF_LIST_LIMIT], removed[:DIFF_LIST_LIMIT]
            if len(old_ids) > DIFF_LIST_LIMIT or len(new_ids) > DIFF_LIST_LIMIT:
                entry["old"] = None if before is None else {"count": len(old_ids)}
                entry["new"] = None if after is None else {"count": len(new_ids)}
        changes.append(entry)
    return changes


_FIELD_ORDER = (
    "schema_version",
    "experiment",
    "owner",
    "description",
    "starts_at",
    "ends_at",
    "population.allowlist",
    "population.max_users",
    "population.fraction",
    "population.segments",
    "variants",
    "severity",
    "tolerance",
    "alpha",
    "mitigation.kill_url",
    "labels",
)
