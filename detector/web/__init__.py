"""HTTP views of the worker (aiohttp): one module per area, each exposing add_routes(router, ...)."""
