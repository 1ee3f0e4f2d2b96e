"""The case store: every evaluation kept, append-only (SQLAlchemy 2 Core, Alembic migrations).

SQLite by default (a file in the user's data directory, WAL mode), PostgreSQL when given a
``postgresql://`` URL. Used by the HTTP service (`cds serve`, issue 15) and the case pages
(issue 16); the core never imports it.
"""

from cds.errors import StoreError

from .exchange import read_lines
from .store import CaseSummary, NewEvaluation, Store, StoredEvaluation, db_url, default_db_path, migrate, open_store

__all__ = [
    "CaseSummary",
    "NewEvaluation",
    "Store",
    "StoreError",
    "StoredEvaluation",
    "db_url",
    "default_db_path",
    "migrate",
    "open_store",
    "read_lines",
]
