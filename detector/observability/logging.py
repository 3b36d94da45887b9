"""Structured JSON logs: one JSON object per line on stderr.

    setup_logging("INFO")
    log = logging.getLogger("detector.alerts")
    log.info("incident opened", extra={"experiment": "subs-mvp-crm-qa", "incident_id": "inc-42"})
    # {"ts": "2021-02-09T18:03:12.345Z", "level": "INFO", "logger": "detector.alerts",
    #  "msg": "incident opened", "experiment": "subs-mvp-crm-qa", "incident_id": "inc-42"}

Fields: `ts` (UTC, RFC 3339, milliseconds), `level`, `logger`, `msg`, then every field passed
with `extra=` (notably `experiment`, `incident_id`, `rule`, `topic`, `partition`), and `exc`
with the traceback when logging an exception.

Convention: **no user ids at INFO or above.** Logs are shipped to systems with wider access
and longer retention than the detector's own state. The blast radius (out-of-target user ids)
is served by `GET /v1/experiments/{experiment}/blast-radius` to authorised callers, never
logged. As a backstop, the extra fields `user_id`, `user_ids`, `users` and `allowlist` are
dropped from records above DEBUG (replaced by `"<redacted>"` markers with a count).
"""

from __future__ import annotations

import json as _json
import logging
import sys
import time
from typing import Any, TextIO

# Attributes every LogRecord has; everything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}

SENSITIVE_FIELDS = frozenset({"user_id", "user_ids", "users", "allowlist"})


def _ts(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (ts, level, logger, msg, extra fields, exc)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _ts(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRS or key.startswith("_") or key in entry:
                continue
            if key in SENSITIVE_FIELDS and record.levelno > logging.DEBUG:
                count = len(value) if isinstance(value, (list, tuple, set, frozenset)) else 1
                entry[key] = f"<redacted: {count}>"
                continue
            entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _json.dumps(entry, default=str, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal; `experiment` / `incident_id` appended when present."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = [f"{k}={getattr(record, k)}" for k in ("experiment", "incident_id", "rule")
                if getattr(record, k, None) is not None]
        return f"{line} [{' '.join(tags)}]" if tags else line


_HANDLER_MARK = "_exposure_detector_handler"


class TransientCoordinatorFilter(logging.Filter):
    """aiokafka logs "Group Coordinator Request failed" at ERROR while a consumer group forms on a
    new broker or group (the coordinator is elected a moment later and aiokafka retries by itself).
    For the first `grace_s` seconds such a record is rewritten to one INFO line saying so; if it
    persists beyond that, it passes through at ERROR, because then something is really wrong.
    `TransientLeaderFilter` does the same for the fetcher's offset lookups while partition
    leaders are elected on a broker that has just started."""

    PREFIX = "Group Coordinator Request failed"
    RETRIABLE: tuple[str, ...] = ("GroupCoordinatorNotAvailable", "NotCoordinator", "CoordinatorLoadInProgress")
    SAYS = "Kafka group coordinator not available yet (normal while a new broker or consumer group starts); retrying"

    def __init__(self, grace_s: float = 30.0, clock=time.monotonic) -> None:
        super().__init__()
        self.grace_s, self.clock = grace_s, clock
        self.first: float | None = None
        self.told = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and "because it is rebalancing" in str(record.msg):
            # A worker joined or left the group: routine in a fleet, not a warning.
            record.levelno, record.levelname = logging.INFO, "INFO"
            return True
        if record.levelno < logging.ERROR or not str(record.msg).startswith(self.PREFIX):
            return True
        if not any(name in record.getMessage() for name in self.RETRIABLE):
            return True
        now = self.clock()
        if self.first is None:
            self.first = now
        if now - self.first > self.grace_s:
            return True
        if self.told:
            return False
        self.told = True
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg, record.args = self.SAYS, None
        return True


class TransientLeaderFilter(TransientCoordinatorFilter):
    """The fetcher's "Failed fetch offsets" while partition leaders are elected (broker start)."""

    PREFIX = "Failed fetch offsets"
    RETRIABLE = ("NotLeaderForPartition", "LeaderNotAvailable")
    SAYS = "Kafka partition leaders not elected yet (normal right after the broker starts); retrying"


def setup_logging(level: int | str = "INFO", json: bool = True, stream: TextIO | None = None) -> logging.Handler:
    """Configure the root logger: one handler writing JSON (or text) lines to `stream` (stderr).

    Idempotent: calling it again replaces the handler it installed before, and leaves
    handlers installed by others (pytest's caplog, for instance) alone.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # Chatty third-party loggers stay at WARNING unless we debug.
    if root.level > logging.DEBUG:
        for name in ("aiokafka", "kafka", "faust", "mode", "aiohttp.access"):
            logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name, kind in (("aiokafka.consumer.group_coordinator", TransientCoordinatorFilter),
                       ("aiokafka.consumer.fetcher", TransientLeaderFilter)):
        logger = logging.getLogger(name)
        for f in list(logger.filters):
            if isinstance(f, TransientCoordinatorFilter):
                logger.removeFilter(f)
        logger.addFilter(kind())
    return handler
