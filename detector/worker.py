"""`detector worker`: create topics, load YAML registrations, run the Faust app."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from detector.settings import Settings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="detector worker", description="Run the exposure detector worker.")
    parser.add_argument("--loglevel", "-l", default=None, help="debug|info|warn|error (default DETECTOR_LOG_LEVEL)")
    args = parser.parse_args(argv)
    settings = Settings()
    level = (args.loglevel or settings.log_level).upper()

    from detector.observability.logging import setup_logging

    setup_logging(level)
    log = logging.getLogger("detector.worker")

    from detector.registration.model import RegistrationError
    from detector.shell.yaml_sync import sync_dir
    from detector.topics import ensure_topics

    async def prepare() -> None:
        await ensure_topics(settings)
        await sync_dir(settings)

    try:
        asyncio.run(prepare())
    except RegistrationError as exc:
        print(f"detector worker: invalid registration in {settings.expectations_dir}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # broker not reachable: say so plainly instead of a stack trace
        print(f"detector worker: cannot prepare Kafka at {settings.kafka_bootstrap}: {exc}", file=sys.stderr)
        return 1

    import faust

    from detector.app import create_app

    asyncio.set_event_loop(asyncio.new_event_loop())
    app = create_app(settings)
    log.info("starting worker %s on http://%s:%d", settings.app_id, settings.web_host, settings.web_port)
    worker = faust.Worker(app, loglevel=level, override_logging=False, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
