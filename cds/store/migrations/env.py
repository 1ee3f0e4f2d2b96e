"""Alembic environment: always run from cds.store.migrate() with an open connection (never from a URL here)."""

from alembic import context

from cds.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
