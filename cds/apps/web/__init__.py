"""The case pages of `cds serve` (issue 16): server-rendered HTML on the service's app, no JavaScript.

`add_routes(app, service)` registers them (`cds.apps.http.app.create_app` calls it); `tasks`
is what the pages ask of the service's worker processes; `form` generates the form from the
profile model and converts it; `security` holds the CSP, CSRF and cookie rules.
"""

from .routes import add_routes

__all__ = ["add_routes"]
