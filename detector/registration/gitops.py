"""GitOps: apply the YAML registrations of a directory to a `RegistrationService`.

The worker calls `apply_dir(service, settings.expectations_dir)` at start;
`detector sync DIR` does the same over HTTP. Every file is validated first (one bad file and
nothing is applied); unchanged registrations are not rewritten, so restarting a worker does not
churn the compacted topic or the history. Files are reviewed in version control, so risks are not
a reason to refuse them here: they are returned (and should be logged) instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from detector.registration.model import load_dir
from detector.registration.risk import Risk, assess
from detector.registration.service import RegistrationService


@dataclass
class ApplyResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    risks: dict[str, list[Risk]] = field(default_factory=dict)


async def apply_dir(
    service: RegistrationService,
    path: str | os.PathLike[str],
    *,
    who: str | None = None,
    prune: bool = False,
) -> ApplyResult:
    """Load and apply every registration under `path`. Raises `RegistrationError` (naming files)
    before writing anything if any file is invalid. `prune` deletes registrations absent from it."""
    wanted = load_dir(path)
    who = who or f"gitops:{os.fspath(path)}"
    result = ApplyResult()
    for name in sorted(wanted):
        new, old = wanted[name], service.get(name)
        if old == new:
            result.unchanged.append(name)
            continue
        risks = assess(old, new, service.observation(name))
        if risks:
            result.risks[name] = risks
        await service.put(new, who)
        (result.created if old is None else result.updated).append(name)
    if prune:
        for name in sorted(set(service.all()) - set(wanted)):
            await service.delete(name, who)
            result.deleted.append(name)
    return result
