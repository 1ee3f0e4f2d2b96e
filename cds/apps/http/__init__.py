"""`cds serve`: the HTTP API and the CDS Hooks 2.0.1 service (issue 15).

    create_app(settings) -> FastAPI     the app factory (settings from the CLI flags, no globals)
    serve(settings)                     check the bind/auth rule, start workers and uvicorn

Modules: settings, app (routes), hooks (CDS Hooks models and prefetch), card (the card from
the report), auth (JWT), middleware (size cap, security headers, access log), pool (worker
processes), work (what a worker does, through the public API in cds/__init__.py), serve.
"""

from .app import create_app
from .serve import serve
from .settings import Settings

__all__ = ["Settings", "create_app", "serve"]
