"""`detector` command line: one subcommand per module, imported only when used.

Each subcommand module exposes `main(argv: list[str]) -> int`. Exit codes:
0 ok, 1 invalid input, 2 usage, 3 needs confirmation (see `detector register`).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "worker": ("detector.worker", "run the detector worker (Faust app on Kafka)"),
    "replay": ("detector.replay", "run the engine over a JSON-lines file of events, no Kafka"),
    "register": ("detector.registration.cli", "register experiments from a YAML file or directory"),
    "registrations": ("detector.registration.cli", "list | show | status | history | delete | validate registrations"),
    "expectations": ("detector.registration.cli", "the same as `registrations` (its historical name)"),
    "sync": ("detector.registration.cli", "push every YAML registration in a directory"),
    "simulate": ("detector.simulate", "produce a realistic scenario into Kafka"),
    "blast-radius": ("detector.incidents.cli", "out-of-target users of an experiment (CSV or JSON)"),
    "discover": ("detector.discovery_cli", "experiments seen on the stream; --write DIR drafts registrations"),
    "dashboard": ("detector.observability.dashboards", "print a Grafana dashboard for an experiment"),
}


def usage() -> str:
    lines = ["usage: detector COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"detector: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    # Modules serving several commands (register/registrations/sync) receive the command name first.
    if getattr(module, "MULTI_COMMAND", False):
        return int(module.main([name, *rest]) or 0)
    return int(module.main(rest) or 0)
