"""GitOps: apply a directory of YAML registrations to a `RegistrationService`. The one sync.

The worker runs it at start over `DETECTOR_EXPECTATIONS_DIR`, straight on the topic
(`sync_dir`); `detector sync DIR` does the same through the HTTP API (`detector.registration.cli`).
Every file is validated first (one bad file and nothing is applied); unchanged registrations are
not rewritten, so restarting a worker does not churn the compacted topic or the history. Files are
reviewed in version control, so risks are not a reason to refuse them here: they are returned
(and logged) instead. `prune` (`DETECTOR_EXPECTATIONS_PRUNE=true` for the worker, `--prune` for
the CLI) deletes registrations that are not in the directory; without it nothing is deleted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from detector.alerts.outbound import KillUrlPolicy
from detector.registration.errors import FieldError, RegistrationError
from detector.registration.files import load_dir
from detector.registration.risk import Risk, assess
from detector.registration.service import RegistrationService
from detector.registration.store import TopicRegistrations
from detector.settings import Settings

log = logging.getLogger(__name__)


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
    kill_url_problem: Callable[[str], str | None] | None = None,
) -> ApplyResult:
    """Load and apply every registration under `path`. Raises `RegistrationError` (naming files)
    before writing anything if any file is invalid. `prune` deletes registrations absent from it.
    `kill_url_problem(url)` says why a kill URL is refused (detector.alerts.outbound)."""
    wanted = load_dir(path)
    refused = [FieldError("mitigation.kill_url", problem, f"{os.fspath(path)}: {name}")
               for name, e in sorted(wanted.items())
               if e.kill_url and kill_url_problem is not None and (problem := kill_url_problem(e.kill_url))]
    if refused:
        raise RegistrationError(refused)
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


async def sync_dir(settings: Settings) -> ApplyResult | None:
    """The worker's start-up sync of `settings.expectations_dir` to the topic (None: no directory)."""
    directory = settings.expectations_dir
    if not directory or not os.path.isdir(directory):
        log.info("no registrations directory at %r; nothing to load", directory)
        return None
    async with TopicRegistrations(settings.kafka, settings.topics.expectations) as service:
        result = await apply_dir(service, directory, prune=settings.expectations_prune,
                                 kill_url_problem=KillUrlPolicy.from_settings(settings).url_problem)
    for name, risks in result.risks.items():
        for risk in risks:
            log.warning("registration %s from %s: %s (%s)", name, directory, risk.message, risk.code,
                        extra={"experiment": name})
    log.info("registrations from %s: %d created, %d updated, %d unchanged, %d deleted", directory,
             len(result.created), len(result.updated), len(result.unchanged), len(result.deleted))
    return result
