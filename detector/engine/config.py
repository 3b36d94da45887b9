"""The engine's tuning knobs: one frozen object passed to every call (no globals, no environment)."""

from __future__ import annotations

from dataclasses import dataclass, field

from detector.engine.stats import RATIO_WEIGHTS, RATIOS, SRM_CONCENTRATIONS, grid_id, ratio_log_weights


@dataclass(frozen=True, slots=True)
class EngineConfig:
    exact_limit: int = 100  # distinct users held exactly (memory: ~150 B per user in a Python set)
    blast_radius_limit: int = 1_000_000  # offender ids kept; beyond, counted only
    sample_ids_limit: int = 1000  # ids carried by a finding
    fraction_ratios: tuple[float, ...] = RATIOS
    fraction_weights: tuple[float, ...] = RATIO_WEIGHTS  # prior weight per ratio (same length)
    srm_concentrations: tuple[float, ...] = SRM_CONCENTRATIONS
    # --- statistics (fraction / split rules; README "Statistics") ---
    alpha: float = 1e-4  # per-experiment lifetime false-alarm budget when the registration sets none
    split_change_grace_ms: int = 3_600_000  # sample_ratio_mismatch: users left out after a split change
    window_grace_ms: int = 3_600_000  # outside_window: accepted clock skew at both edges of the window
    returning_assume_sticky: bool = False  # returning_enrolled_exceeded: test the sticky-bucketing bound
    returning_min_tolerance: float = 0.1  # ... and that bound's tolerance floor (rules/returning.py)
    segment_missing_breach: bool = False  # an enrolled event without attributes breaches declared segments
    unregistered_severity: str = "warning"
    fingerprint_bits: int = 30  # seen-set fingerprints: new-user false positive = keys / 2^bits
    small_batch_keys: int = 24  # batches with at most this many distinct users probe the user set in plain Python

    # derived once from the mixture (ln pi_j, and the grid's id kept with the states built on it)
    fraction_log_pi: tuple[float, ...] = field(init=False, repr=False, compare=False)
    fraction_grid: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # raises ValueError unless one positive weight per ratio
        object.__setattr__(self, "fraction_grid", grid_id(self.fraction_ratios, self.fraction_weights))
        object.__setattr__(self, "fraction_log_pi", ratio_log_weights(self.fraction_weights))


DEFAULT_CONFIG = EngineConfig()
