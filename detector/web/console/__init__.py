"""The web console: server-rendered pages for on-call and experiment owners.

    /login                     sign in with an API token (form field `token`)
    /                          overview: declared vs observed per experiment, firing incidents first
    /incidents/{id}            one incident: summary, timeline, blast radius, Acknowledge / Resolve
    /incidents/{id}/blast-radius.csv   the out-of-target users (needs `read:users`)
    /experiments/{experiment}  side by side, every rule in words, registration history
    /register                  paste YAML, see errors and risks, confirm, apply

Pages are Jinja2 templates (aiohttp-jinja2), readable without JavaScript; `static/console.js`
only refreshes the overview in place and shows local times on hover. Nothing is loaded from the
internet. Sessions and CSRF: `detector.web.console.session`. The console reads and writes through
the same services as the API (registration service, incident API, engine observations).
"""

from detector.web.console.app import Console, add_console_routes

__all__ = ["Console", "add_console_routes"]
