"""HTTP views of the worker (aiohttp): one module per area, each exposing add_routes(router, ...).

Every route is registered with `auth.add_route(router, method, path, handler, access=...)` (the
access rule: `public`, `status` or a scope) behind the one middleware stack of `middleware`
(errors -> auth -> body size); a route registered any other way stops the worker at start-up.

    auth.py        tokens, scopes, the route declarations, `has_scope`, the audit record
    middleware.py  the stack: JSON errors, bearer auth, body limits
    problems.py    error bodies, `read_body`, paging cursors
    redact.py      user ids left out without `read:users` (and audited with it)
"""
