"""The engine's compiled, immutable view of a registration.

`CompiledRegistration` is what `detector.registration.parse_registration` compiles a validated
registration document into (epoch milliseconds, frozensets): the engine, the alerting and the
API read it. The document model (`model.Registration`), its validation and encoding live beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SEVERITIES = ("critical", "error", "warning", "info")
# Relative excess the fraction rule ignores unless the registration says otherwise: covers a
# logging asymmetry of up to ~5.6% between enrolled and not-enrolled evaluations (not-enrolled
# evaluations logged at rate >= 0.944; README "Statistics" has the trade-off with detection delay).
DEFAULT_TOLERANCE = 0.06


@dataclass(frozen=True)
class Flag:
    """The flag configuration an experiment's exposure comes from (`detector.flags`)."""

    source: str | None  # a configured flag source; None: any
    key: str  # the flag's key there (defaults to the experiment key)


@dataclass(frozen=True)
class CompiledRegistration:
    experiment: str
    owner: str | None = None
    description: str | None = None
    starts_at: int | None = None  # epoch ms, inclusive
    ends_at: int | None = None  # epoch ms, exclusive
    allowlist: frozenset[str] | None = None
    max_users: int | None = None
    fraction: float | None = None  # of eligible traffic
    segments: dict[str, frozenset[str]] | None = None  # attribute -> allowed values
    variants: dict[str, float] | None = None  # declared split, sums to 1
    severity: str = "warning"
    tolerance: float = DEFAULT_TOLERANCE  # fraction rule alerts on fraction * (1 + tolerance)
    alpha: float | None = None  # lifetime false-alarm budget of the statistical rules; None: the fleet share
    # share of not-enrolled evaluations that reach the detector (1: all; q: sampled at rate q;
    # 0: the SDK logs only enrolled users, which leaves the fraction rule nothing to judge)
    unenrolled_logged: float = 1.0
    kill_url: str | None = None  # opt-in auto-mitigation (mitigation.kill_url)
    labels: dict[str, str] = field(default_factory=dict)
    schema_version: int = 1
    mode: str = "page"  # page | observe (record incidents, do not page)
    flag: Flag | None = None
    context_kind: str | None = None  # identity.context_kind: the context kind whose key is the unit

    def active_rules(self) -> list[str]:
        """The rules this declaration switches on, in registry order (detector.engine.rules.RULES)."""
        from detector.engine.rules import active_rules  # the registry imports this module

        return active_rules(self)
