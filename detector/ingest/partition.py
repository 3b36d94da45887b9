"""Detection state of one input partition, and applying a batch of its records.

Pure: no Kafka, no clock. The service feeds it decoded events with their
offsets and persists what `dirty_checkpoints()` hands back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from detector.discovery import AttributeSample
from detector.engine import EngineConfig, ExperimentState, Finding, by_experiment, process_batch
from detector.events import Assignment
from detector.registration.compiled import CompiledRegistration
from detector.ingest import checkpoint


STEP_EVENTS = 1000  # events between two steps of `PartitionDetector.steps`
# experiment -> its registration, as a mapping or a lookup function
Registrations = Mapping[str, CompiledRegistration] | Callable[[str], CompiledRegistration | None]


class PartitionDetector:
    def __init__(self, partition: int, engine_config: EngineConfig | None = None) -> None:
        self.partition = partition
        self.engine_config = engine_config or EngineConfig()
        self.states: dict[str, ExperimentState] = {}
        self.applied: dict[str, int] = {}  # experiment -> last input offset its state covers
        self.skip_upto = -1  # after a restore: events at or below this may already be applied
        self.dirty: set[str] = set()  # changed since the last checkpoint
        self.observed: set[str] = set()  # changed since the metrics last looked
        self.attributes = AttributeSample()  # attribute values seen, per experiment (for discovery)

    def restore(self, key: bytes, value: bytes | None) -> None:
        """Apply one record of the state changelog (latest wins; None is a tombstone)."""
        exp = key.decode()
        if value is None:
            self.states.pop(exp, None)
            self.applied.pop(exp, None)
            return
        cp = checkpoint.decode(value)
        self.states[exp] = ExperimentState.from_bytes(cp.blob)
        self.observed.add(exp)
        self.applied[exp] = cp.offset
        self.skip_upto = max(self.skip_upto, cp.offset)

    def apply(
        self,
        events: Sequence[Assignment],
        offsets: Sequence[int] | None,
        registrations: Registrations,
        last_offset: int | None = None,
    ) -> list[Finding]:
        """Run one batch (events in offset order) through the engine; returns the findings.

        `offsets` holds each event's input offset. The shell may pass None (with `last_offset`,
        the batch's last offset) when the batch starts after `skip_upto`: per-event offsets are
        only needed to drop what a restored checkpoint already covers.
        """
        return [f for found in self.steps(events, offsets, registrations, last_offset) for f in found]

    def steps(
        self,
        events: Sequence[Assignment],
        offsets: Sequence[int] | None,
        registrations: Registrations,
        last_offset: int | None = None,
        every: int = STEP_EVENTS,
    ) -> Iterator[list[Finding]]:
        """`apply` in steps: the findings of each run of experiments totalling ~`every` events.

        The same work as `apply`, in the same order. The shell runs the event loop between steps:
        the loop reads at most 256 KB from a socket per turn, so a worker that turned it only
        between fetches read the next fetch only once its buffers were empty, and waited for it
        (~10% of a catching-up worker's time).
        """
        if not events:
            return
        lookup = registrations if callable(registrations) else registrations.get
        last = offsets[-1] if last_offset is None else last_offset  # type: ignore[index]  # one of them is given
        if offsets is not None and offsets[0] <= self.skip_upto:
            # Replaying after a restore: drop what each experiment's checkpoint already covers.
            applied = self.applied
            events = [ev for ev, off in zip(events, offsets) if off > applied.get(ev.experiment, -1)]
        groups = by_experiment(events)
        findings: list[Finding] = []
        done = 0
        cfg = self.engine_config
        states = self.states
        applied = self.applied
        dirty = self.dirty
        sample = self.attributes.add
        for exp, evs in groups.items():
            sample(exp, evs)
            state = states.get(exp)
            if state is None:
                state = states[exp] = ExperimentState.new(exp)
            found = process_batch(state, lookup(exp), evs, cfg)
            if found:
                findings.extend(found)
            applied[exp] = last
            dirty.add(exp)
            self.observed.add(exp)
            done += len(evs)
            if done >= every:
                yield findings
                findings, done = [], 0
        if findings or done:
            yield findings

    def mark_dirty(self, experiments: Iterable[str]) -> None:
        """Checkpoint these again (their last checkpoint was not acknowledged)."""
        self.dirty.update(e for e in experiments if e in self.states)

    def take_dirty_checkpoints(self) -> list[tuple[bytes, bytes]]:
        """(key, value) records for every experiment changed since the last call."""
        out = [(exp.encode(), checkpoint.encode(self.applied[exp], self.states[exp].to_bytes())) for exp in self.dirty]
        self.dirty.clear()
        return out
