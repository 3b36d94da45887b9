"""Rule states and observations in words, for people (the console); pure functions."""

from __future__ import annotations

import math
from typing import Any, Mapping

RULE_TITLES = {
    "unregistered": "Unregistered experiment",
    "allowlist_breach": "Allowlist",
    "max_users_exceeded": "Maximum users",
    "fraction_exceeded": "Fraction of eligible traffic",
    "returning_enrolled_exceeded": "Returning users enrolled",
    "segment_breach": "Segments",
    "outside_window": "Time window",
    "sample_ratio_mismatch": "Variant split (SRM)",
    "config_exceeds_declaration": "Flag configuration",
}


def plural(n: int | None, word: str, many: str | None = None) -> str:
    n = int(n or 0)
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def wilson(s: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval for a proportion s/n (None without data)."""
    if not n:
        return None
    p = s / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def fraction_text(observed: Mapping[str, Any]) -> str:
    s, n = int(observed.get("enrolled_users") or 0), int(observed.get("eligible_users") or 0)
    if not n:
        return "no eligible users yet"
    iv = wilson(s, n)
    return f"{pct(s / n)} (95% interval {pct(iv[0])}–{pct(iv[1])})" if iv else pct(s / n)


def explain(rule: str, state: Mapping[str, Any], expected: Mapping[str, Any] | None,
            observed: Mapping[str, Any]) -> str:
    """One sentence: what the rule measured against what was declared."""
    e = expected or {}
    offenders = int(state.get("offenders") or 0)
    enrolled = int(observed.get("enrolled_users") or 0)
    if rule == "unregistered":
        return (f"{plural(enrolled, 'distinct enrolled user')} of {plural(observed.get('eligible_users'), 'eligible user')}, "
                "and no registration declares this experiment")
    if rule == "allowlist_breach":
        size = len(e.get("allowlist") or []) if e.get("allowlist") is not None else None
        declared = f"declared an allowlist of {plural(size, 'user')}" if size is not None else "declared an allowlist"
        return f"{plural(offenders, 'enrolled user')} not on the allowlist; {declared}"
    if rule == "max_users_exceeded":
        lb = int(state.get("statistic") or observed.get("enrolled_users_lower_bound") or enrolled)
        return f"at least {plural(lb, 'distinct enrolled user')}, declared at most {e.get('max_users')}"
    if rule == "fraction_exceeded":
        share: float | None = e.get("fraction")
        return (f"{fraction_text(observed)} of eligible users enrolled, declared {pct(share)}"
                + (f" (alert above {pct(share * (1 + (e.get('tolerance') or 0)))})" if share is not None else ""))
    if rule == "segment_breach":
        segs = e.get("segments") or {}
        what = ", ".join(f"{k} in {sorted(v)}" for k, v in segs.items()) or "the declared segments"
        return f"{plural(offenders, 'enrolled user')} outside {what}"
    if rule == "outside_window":
        return (f"{plural(offenders, 'user')} enrolled outside the declared window "
                f"{e.get('starts_at') or '…'} – {e.get('ends_at') or '…'}")
    if rule == "sample_ratio_mismatch":
        variants = observed.get("variants") or {}
        split = ", ".join(f"{k}: {v:,}" for k, v in sorted(variants.items()))
        declared = ", ".join(f"{k}: {v:g}" for k, v in sorted((e.get("variants") or {}).items()))
        return f"observed split {split or '–'}; declared {declared or '–'}"
    return f"{plural(offenders, 'offending user')}"
