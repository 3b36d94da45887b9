"""The functional core: per-experiment state + rules. No I/O, clock or randomness.

    state = ExperimentState.new("exp-key")
    for experiment, events in by_experiment(mixed_events).items(): ...
    findings = process_batch(state, expectation_or_None, events, config)
    state.to_bytes() / ExperimentState.from_bytes(b) / state.merge(other)
    observe(state, expectation) -> dict;  rule_breaches(state, expectation) -> {rule: bool}
"""

from detector.engine.batches import by_experiment
from detector.engine.rules import Finding, observe, process_batch, rule_breaches
from detector.engine.state import DEFAULT_CONFIG, RULES, EngineConfig, ExperimentState

__all__ = ["DEFAULT_CONFIG", "by_experiment", "RULES", "EngineConfig", "ExperimentState", "Finding", "observe",
           "process_batch", "rule_breaches"]
