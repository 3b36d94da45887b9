"""The functional core: per-experiment state + rules. No I/O, clock or randomness.

    state = ExperimentState.new("exp-key")
    for experiment, events in by_experiment(mixed_events).items(): ...
    findings = process_batch(state, registration_or_None, events, config)
    state.to_bytes() / ExperimentState.from_bytes(b) / state.merge(other)
    observe(state, registration) -> Observation;  rule_breaches(state, registration) -> {rule: bool}

The rules are one module each under `detector.engine.rules`, listed in its `RULES` registry.
"""

from detector.engine.batches import by_experiment
from detector.engine.config import DEFAULT_CONFIG, EngineConfig
from detector.engine.process import Declared, Observation, Observed, observe, process_batch, rule_breaches
from detector.engine.rules import FIRING, Finding, RuleState
from detector.engine.state import RULES, ExperimentState

__all__ = ["DEFAULT_CONFIG", "FIRING", "by_experiment", "RULES", "EngineConfig", "ExperimentState", "Finding",
           "Declared", "Observation", "Observed", "RuleState", "observe", "process_batch", "rule_breaches"]
