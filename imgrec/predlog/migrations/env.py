"""Alembic environment for the prediction log. Run through ``imgrec.predlog.store`` (``Store`` upgrades on open).

The caller hands over a connection already inside a transaction (``config.attributes["connection"]``),
so a migration and its version bump commit together, under the caller's lock.

A new revision file (from script.py.mako), to fill in by hand:
    python -c "from alembic import command; from imgrec.predlog.store import alembic_config; \
               command.revision(alembic_config(), 'what changes', rev_id='0003')"
"""

from __future__ import annotations

from alembic import context

from imgrec.predlog.store import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "The imgrec migrations run programmatically: open the database with imgrec.predlog.store.Store(url), "
        "which upgrades it to the newest revision."
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
