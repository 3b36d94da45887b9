"""The configuration watcher: the imperative shell around the flag readers and the rule.

Every `interval` (and at once when a webhook says something changed) it polls each URL
source (`If-None-Match` with the last ETag), re-reads file and directory sources whose
content changed, and judges every registration against its flag's configured exposure.

It runs on every worker, and each worker feeds findings only for the experiments whose
partition of the assignments topic it owns, into the same per-partition alert lifecycle
as the engine's findings (checkpointed with them): one incident per experiment across the
fleet, with the deterministic incident id, paged, kept firing while the configuration
exceeds the declaration, resolved when it no longer does.

A source that cannot be reached or read keeps its last good document: nothing pages and
nothing resolves because of an outage. The outage shows in `/readyz` (`flag_sources`) and
in `exposure_detector_flag_source_up` (alert on that, at a lower severity).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mode import Service
from prometheus_client import CollectorRegistry, Counter, Gauge

from detector.registration.compiled import CompiledRegistration

from .model import ConfiguredExposure, FlagDocument, FormatError
from .rule import RULE, compare, config_exceeds_declaration
from .sources import SourceSpec, parse_bytes, read_document, read_path, request_headers

log = logging.getLogger(__name__)
_DAY_MS = 86_400_000
_MIN_RATE_SPAN_MS = 60_000  # a rate from less than a minute of traffic is not worth quoting


@dataclass
class SourceState:
    spec: SourceSpec
    document: FlagDocument | None = None
    digest: str | None = None
    etag: str | None = None
    last_success_at: float | None = None
    last_attempt_at: float | None = None
    error: str | None = None
    failures: int = 0
    # flag key -> (configuration before its latest change, when that change happened, epoch ms)
    changes: dict[str, tuple[ConfiguredExposure | None, int]] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        doc = self.document
        return {
            "kind": self.spec.kind,
            "status": "ok" if self.error is None and (doc is not None or self.spec.push_only) else
                      ("waiting" if self.error is None else "unreachable"),
            "location": "webhook" if self.spec.push_only else ("url" if self.spec.is_url else "path"),
            "flags": len(doc.flags) if doc is not None else None,
            "cannot_tell": doc.cannot_tell if doc is not None else None,
            "last_success_at": self.last_success_at,
            "consecutive_failures": self.failures,
            "error": self.error,
        }


class FlagMetrics:
    """The watcher's series, in the worker's registry (labels: the configured source name only)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = "exposure_detector_flag_"
        self.up = Gauge(p + "source_up", "1 while the flag source answered its last poll (or is push-only), else 0.",
                        ["source"], registry=registry)
        self.fetches = Counter(p + "source_fetches_total", "Polls of a flag source by outcome "
                               "(changed, unchanged, error, invalid).", ["source", "outcome"], registry=registry)
        self.last_success = Gauge(p + "source_last_success_timestamp_seconds",
                                  "Unix time of the last successful read of a flag source.", ["source"], registry=registry)
        self.flags = Gauge(p + "configurations", "Flags of a source by judgement state "
                           "(within, exceeds, cannot_tell).", ["source", "state"], registry=registry)


class FlagWatcher(Service):
    """Polls and receives flag configurations; feeds `config_exceeds_declaration` to the alert lifecycle."""

    def __init__(
        self,
        specs: list[SourceSpec],
        *,
        registrations: Callable[[], Mapping[str, CompiledRegistration]],
        owner_of: Callable[[str], int | None],  # experiment -> its partition, if this worker owns it
        publisher,  # detector.shell.outbox.AlertPublisher
        lock: asyncio.Lock,  # the ingest service's lock (lifecycles vs checkpoints)
        rate_of: Callable[[str], tuple[float | None, int | None]] = lambda e: (None, None),
        metrics: FlagMetrics | None = None,
        interval_s: float = 15.0,
        timeout_s: float = 10.0,
        unleash_token: str = "",
        flagd_token: str = "",
        clock: Callable[[], float] = time.time,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.states = {s.name: SourceState(s) for s in specs}
        self.registrations = registrations
        self.owner_of = owner_of
        self.publisher = publisher
        self.lock = lock
        self.rate_of = rate_of
        self.metrics = metrics
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.tokens = {"unleash_token": unleash_token, "flagd_token": flagd_token}
        self.clock = clock
        self.verdicts: dict[str, dict[str, Any]] = {}  # experiment -> its judgement (for /v1/flags)
        self._fed: dict[str, str] = {}  # experiment -> fingerprint of the configuration last fed
        self._wake = asyncio.Event()
        self._session: Any = None  # aiohttp.ClientSession, from on_start
        for s in specs:
            if metrics is not None:
                metrics.up.labels(s.name).set(1 if s.push_only else 0)

    # ---- lifecycle ---------------------------------------------------------------------------
    async def on_start(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def on_stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    @Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            self._wake.clear()
            try:
                await self.poll_all()
                await self.judge(self.clock())
            except Exception:
                log.exception("flag watcher pass failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            except TimeoutError:
                pass

    def wake(self) -> None:
        self._wake.set()

    # ---- reading sources ---------------------------------------------------------------------
    async def poll_all(self) -> None:
        for st in self.states.values():
            if not st.spec.push_only:
                await self.poll(st)

    async def poll(self, st: SourceState) -> None:
        now = self.clock()
        st.last_attempt_at = now
        try:
            if st.spec.is_url:
                outcome = await self._poll_url(st, now)
            else:
                digest, doc = await asyncio.get_running_loop().run_in_executor(None, read_path, st.spec)
                outcome = self.apply(st, digest, doc, now) if digest != st.digest else "unchanged"
        except FormatError as exc:
            self._failed(st, "invalid", f"invalid document: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - unreachable, timeout, unreadable file: keep the last good document
            self._failed(st, "error", f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        self._succeeded(st, now, outcome)

    async def _poll_url(self, st: SourceState, now: float) -> str:
        headers = request_headers(st.spec, **self.tokens)
        if st.etag and st.document is not None:
            headers["If-None-Match"] = st.etag
        async with self._session.get(st.spec.location, headers=headers) as resp:
            if resp.status == 304:
                return "unchanged"
            if resp.status != 200:
                raise ConnectionError(f"HTTP {resp.status}")
            data = await resp.read()
            st.etag = resp.headers.get("ETag")
        digest = hashlib.sha256(data).hexdigest()
        if digest == st.digest:
            return "unchanged"
        return self.apply(st, digest, read_document(st.spec.kind, parse_bytes(data)), now)

    def accept(self, name: str, body: bytes) -> tuple[int, str]:
        """A webhook call for source `name`: a full document is applied, anything else triggers a poll."""
        st = self.states.get(name)
        if st is None:
            return 404, f"no flag source named {name!r}"
        doc = None
        if body.strip():
            try:
                doc = read_document(st.spec.kind, parse_bytes(body))
            except FormatError:
                doc = None  # e.g. an Unleash addon event or a GrowthBook "no payload" body: just a signal
        if doc is None:
            if st.spec.push_only:
                return 422, f"the body is not a {st.spec.kind} configuration document"
            self.wake()
            return 202, "refresh scheduled"
        now = self.clock()
        self._succeeded(st, now, self.apply(st, hashlib.sha256(body).hexdigest(), doc, now))
        self.wake()
        return 202, "applied"

    def apply(self, st: SourceState, digest: str, doc: FlagDocument, now: float) -> str:
        """Take a new document; remember, per changed flag, the configuration before and when it changed."""
        old = st.document.flags if st.document is not None else {}
        at = int(now * 1000)
        if doc.updated_at is not None and doc.updated_at <= at:
            at = doc.updated_at  # the document's own time of the change (GrowthBook dateUpdated)
        for key, conf in doc.flags.items():
            before = old.get(key)
            if before != conf or key not in st.changes:
                st.changes[key] = (before, at)
        st.document, st.digest = doc, digest
        return "changed"

    def _succeeded(self, st: SourceState, now: float, outcome: str) -> None:
        if st.error is not None:
            log.info("flag source %s is readable again", st.spec.name)
        st.error, st.failures, st.last_success_at = None, 0, now
        if self.metrics is not None:
            self.metrics.up.labels(st.spec.name).set(1)
            self.metrics.fetches.labels(st.spec.name, outcome).inc()
            self.metrics.last_success.labels(st.spec.name).set(now)

    def _failed(self, st: SourceState, outcome: str, error: str) -> None:
        if st.failures == 0:
            log.warning("flag source %s failed (keeping its last configuration): %s", st.spec.name, error)
        st.error, st.failures = error, st.failures + 1
        if self.metrics is not None:
            self.metrics.up.labels(st.spec.name).set(0)
            self.metrics.fetches.labels(st.spec.name, outcome).inc()

    # ---- judging -----------------------------------------------------------------------------
    def lookup(self, exp: CompiledRegistration) -> tuple[str, SourceState | None, str]:
        """(state, source, flag key): found, unknown (a source not read yet), unknown_source or not_found."""
        wanted = exp.flag.source if exp.flag is not None else None
        key = exp.flag.key if exp.flag is not None else exp.experiment
        if wanted is not None and not any(st.spec.matches(wanted) for st in self.states.values()):
            return "unknown_source", None, key  # the registration names a source this worker is not given
        pending = False
        for st in self.states.values():
            if not st.spec.matches(wanted):
                continue
            if st.document is None:
                pending = True
            elif key in st.document.flags:
                return "found", st, key
        return ("unknown" if pending else "not_found"), None, key

    async def judge(self, now: float) -> None:
        now_ms = int(now * 1000)
        counts: dict[tuple[str, str], int] = {}
        verdicts: dict[str, dict[str, Any]] = {}
        for experiment, exp in self.registrations().items():
            state, st, key = self.lookup(exp)
            if st is None:
                named = exp.flag.source if exp.flag is not None else None
                if named is not None or state != "not_found":
                    verdicts[experiment] = {"source": named, "key": key, "state": state}
                if state == "not_found" and named is not None:
                    await self._clear(experiment, now, None, key, "(flag removed)")
                continue
            assert st.document is not None  # lookup found the key in it
            conf = st.document.flags[key]
            before, changed_at = st.changes.get(key, (None, now_ms))
            flag = {"source": st.spec.name, "key": key}
            rate, first_user = self.rate_of(experiment)
            finding = config_exceeds_declaration(exp, flag, conf, before, changed_at, now_ms, rate)
            verdict = compare(exp, conf)
            judged = "cannot_tell" if verdict is None else ("exceeds" if verdict.exceeds else "within")
            counts[(st.spec.name, judged)] = counts.get((st.spec.name, judged), 0) + 1
            verdicts[experiment] = {
                **flag, "state": judged, "configuration": conf.describe(), "changed_at": changed_at,
                "reasons": list(verdict.reasons) if verdict else [], "first_user_at": first_user,
                "undetermined": list(verdict.undetermined) if verdict else [conf.cannot_tell],
            }
            if finding is not None and verdict is not None:
                finding.observed["first_user_at"] = first_user
                await self._feed(experiment, finding, now, "\0".join((st.spec.name, key, conf.describe(), *verdict.reasons)))
            elif verdict is not None:  # within the declaration again ("cannot tell" proves nothing)
                await self._clear(experiment, now, f"{st.spec.name}:{key}", key, conf.describe())
        self.verdicts = verdicts
        if self.metrics is not None:
            for name in self.states:
                for judged in ("within", "exceeds", "cannot_tell"):
                    self.metrics.flags.labels(name, judged).set(counts.get((name, judged), 0))

    async def _feed(self, experiment: str, finding, now: float, fingerprint: str) -> None:
        partition = self.owner_of(experiment)
        if partition is None:
            return
        async with self.lock:
            inc = self.publisher.lifecycle(partition).open_incident(experiment, RULE)
            # Open one for a new configuration (but do not reopen one an operator resolved while the
            # configuration stayed the same); keep an open one alive well inside its quiet period.
            keep_alive = self.publisher.config.resolve_quiet_period_ms / 3000.0
            stale = inc is not None and now - inc.last_evidence_at / 1000.0 >= min(keep_alive, 60.0)
            if self._fed.get(experiment) != fingerprint or stale:
                self._fed[experiment] = fingerprint
                await self.publisher.on_findings(partition, [finding], now)

    async def _clear(self, experiment: str, now: float, flag: str | None, key: str, after: str) -> None:
        self._fed.pop(experiment, None)
        partition = self.owner_of(experiment)
        if partition is None:
            return
        async with self.lock:
            if self.publisher.lifecycle(partition).open_incident(experiment, RULE) is None:
                return
            await self.publisher.on_cleared(partition, experiment, RULE, now, "configuration_changed",
                                            "configuration_fixed", flag=flag or key, after=after,
                                            rule_in_breach=False)

    # ---- views -------------------------------------------------------------------------------
    def sources_view(self) -> dict[str, dict[str, Any]]:
        return {name: st.view() for name, st in self.states.items()}


def users_per_day(state) -> tuple[float | None, int | None]:
    """(eligible distinct users a day over the experiment's observed span, first out-of-target user's time)."""
    if state is None:
        return None, None
    first = min(state.rule_first.values()) if getattr(state, "rule_first", None) else None
    span = (state.last_ts or 0) - (state.first_ts or 0)
    if not state.n or span < _MIN_RATE_SPAN_MS:
        return None, first
    return state.n * _DAY_MS / span, first


def owned_partition(ingest, topic: str, experiment: str) -> int | None:
    """The partition of `topic` that holds `experiment` (producers key by experiment), if this worker owns it."""
    from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]

    consumer = getattr(ingest, "consumer", None)
    parts = consumer.partitions_for_topic(topic) if consumer is not None else None
    if not parts:
        return None
    ordered = sorted(parts)
    p = DefaultPartitioner()(experiment.encode("utf-8"), ordered, ordered)
    return p if p in ingest.partitions else None
