"""Incident response: who was affected (blast radius), what happened when (incident views).

    blast_radius.py   out-of-target users of an experiment from the engine state: pages, CSV
    views.py          an incident's merged timeline (lifecycle + deliveries + registration
                      changes) as JSON and as Markdown for a post-mortem
    cli.py            `detector blast-radius EXPERIMENT --format csv|json` over the worker API

Pure: no Kafka, no HTTP server, no clock. The routes live in `detector.web.incidents_api`.
"""
