"""A mixed batch of events split into one batch per experiment: what `process_batch` takes.

Each experiment's events keep their input order (the rules depend on it: first enrolled event
per user, offenders in arrival order); experiments appear in order of their first event.
"""

from __future__ import annotations

from collections.abc import Iterable

from detector.events import Assignment


def by_experiment(events: Iterable[Assignment]) -> dict[str, list[Assignment]]:
    groups: dict[str, list[Assignment]] = {}
    get = groups.get
    for ev in events:  # runs for every event: one dict lookup and one append
        g = get(ev.experiment)
        if g is None:
            groups[ev.experiment] = [ev]
        else:
            g.append(ev)
    return groups
