"""`detector replay EVENTS.jsonl --registrations DIR [--format text|json] [--batch N]`

Runs the detection engine over a JSON-lines file of assignment events, without Kafka.
Lines are decoded in batches with `detector.events.decode_batch` (the same result as `decode` per line) (record time 0: events without `ts`
get epoch 0). Lines are read in chunks of `--batch` (default 5000), like a consumer
fetch, and each chunk is grouped by experiment in input order before it reaches the
engine: the same batching the worker does, so detection times match.

Output:
- text (default): a timeline, one line per finding, ISO 8601 UTC times:
  `first offending <ts> -> detected <ts> (+delay) rule experiment blast radius, statistic, summary`
  followed by the final state of every rule per experiment;
- json: one JSON object per finding per line (Finding.to_dict(): rule, experiment,
  severity, first_offending_event_at, detected_at (epoch ms), observed, expected,
  blast_radius, sample_ids, statistic, summary).

Progress goes to stderr every ~2 s. Exit codes: 0 ok, 1 unreadable/undecodable input
(the message names the line), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from itertools import islice
from collections.abc import Sequence
from typing import TextIO

from detector.engine import EngineConfig, ExperimentState, Finding, by_experiment, observe, process_batch
from detector.events import decode_batch
from detector.registration.compiled import CompiledRegistration
from detector.registration import load_dir


def iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _delay(ms: int) -> str:
    s = max(0, ms) / 1000
    if s < 60:
        return f"+{s:.1f}s"
    if s < 3600:
        return f"+{int(s // 60)}m{int(s % 60):02d}s"
    return f"+{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


class _Printer:
    def __init__(self, fmt: str, out: TextIO) -> None:
        self.fmt, self.out, self.count = fmt, out, 0

    def finding(self, f: Finding) -> None:
        self.count += 1
        if self.fmt == "json":
            self.out.write(json.dumps(f.to_dict(), separators=(",", ":")) + "\n")
            return
        stat = "" if f.statistic is None else f" statistic {f.statistic:.4g},"
        self.out.write(
            f"{iso(f.first_offending_event_at)} -> {iso(f.detected_at)} "
            f"({_delay(f.detected_at - f.first_offending_event_at)})  {f.rule:<22} {f.experiment}  "
            f"[{f.severity}] blast radius {f.blast_radius},{stat} {f.summary}\n")


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    ap = argparse.ArgumentParser(prog="detector replay", description="run the engine over a JSON-lines file")
    ap.add_argument("events", help="JSON-lines file of assignment events ('-' for stdin)")
    ap.add_argument("--registrations", "--expectations", dest="registrations", metavar="DIR",
                    help="directory of YAML registrations (--expectations: its historical name)")
    ap.add_argument("--format", choices=("text", "json"), default="text")
    ap.add_argument("--batch", type=int, default=5000, help="lines per engine batch (default 5000)")
    ap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    if args.batch < 1:
        err.write("detector replay: --batch must be >= 1\n")
        return 2
    registrations: dict[str, CompiledRegistration] = {}
    if args.registrations:
        if not os.path.isdir(args.registrations):
            err.write(f"detector replay: {args.registrations}: not a directory\n")
            return 1
        try:
            registrations = load_dir(args.registrations)
        except Exception as exc:  # invalid registrations are invalid input
            err.write(f"detector replay: cannot load registrations from {args.registrations}: {exc}\n")
            return 1
    try:
        fh = sys.stdin.buffer if args.events == "-" else open(args.events, "rb")
    except OSError as exc:
        err.write(f"detector replay: cannot open {args.events}: {exc.strerror}\n")
        return 1

    config = EngineConfig()
    states: dict[str, ExperimentState] = {}
    printer = _Printer(args.format, out)
    t0 = last = time.perf_counter()
    n_events = 0
    lineno = 0
    size = None
    try:
        size = os.fstat(fh.fileno()).st_size
    except (OSError, ValueError, AttributeError):
        pass

    engine_s = 0.0

    def run(chunk) -> None:
        nonlocal engine_s
        te = time.perf_counter()
        for exp_key, events in by_experiment(chunk).items():
            st = states.get(exp_key)
            if st is None:
                st = states[exp_key] = ExperimentState.new(exp_key)
            for f in process_batch(st, registrations.get(exp_key), events, config):
                printer.finding(f)
        engine_s += time.perf_counter() - te

    def flush(raws: list, linenos) -> str | None:
        """Decode a chunk of lines in one batch and run it; returns an error naming the line, if any."""
        nonlocal n_events
        events, _, rejects = decode_batch(raws, [0] * len(raws))
        if rejects:
            pos, rej = rejects[0]
            return f"detector replay: {args.events}:{linenos[pos]}: {rej.reason}\n"
        run(events)
        n_events += len(events)
        return None

    with fh:
        try:
            while True:
                lines = list(islice(fh, args.batch))  # C-level reads, like a consumer fetch
                if not lines:
                    break
                raws = list(filter(bytes.strip, lines))  # blank lines are skipped
                linenos: Sequence[int]
                if len(raws) == len(lines):
                    linenos = range(lineno + 1, lineno + 1 + len(lines))
                else:
                    linenos = [lineno + 1 + i for i, raw in enumerate(lines) if raw.strip()]
                lineno += len(lines)
                if raws:
                    problem = flush(raws, linenos)
                    if problem:
                        err.write(problem)
                        return 1
                now = time.perf_counter()
                if not args.quiet and now - last >= 2.0:
                    last = now
                    pct = f" ({fh.tell() / size:.0%})" if size else ""
                    err.write(f"replay: {lineno:,} lines{pct}, {n_events / (now - t0):,.0f} events/s\n")
        except (OSError, UnicodeDecodeError) as exc:
            err.write(f"detector replay: {args.events}:{lineno + 1}: unreadable: {exc}\n")
            return 1
    dt = time.perf_counter() - t0
    if args.format == "text":
        out.write(f"\n# final state ({n_events:,} events, {len(states)} experiments)\n")
        for key, st in states.items():
            o = observe(st, registrations.get(key), config)
            ob = o.observed
            rules = ", ".join(f"{r}={v.state}" for r, v in o.rules.items()) or "no rules declared"
            frac = "-" if ob.observed_fraction is None else f"{ob.observed_fraction:.4%}"
            out.write(f"{key}: {ob.enrolled_users:,} enrolled / {ob.eligible_users:,} eligible users "
                      f"({frac}), {ob.events:,} events {iso(ob.first_event_at)} .. "
                      f"{iso(ob.last_event_at)}; {rules}\n")
    if not args.quiet:
        err.write(f"replay: {n_events:,} events, {len(states)} experiments, {printer.count} findings in "
                  f"{dt:.2f} s ({n_events / dt if dt else 0:,.0f} events/s; engine incl. output "
                  f"{engine_s:.2f} s = {engine_s / max(1, n_events) * 1e6:.2f} us/event, read+decode "
                  f"{dt - engine_s:.2f} s = {(dt - engine_s) / max(1, n_events) * 1e6:.2f} us/event)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
