"""Alembic environment: the URL comes from the caller (``anfu db upgrade``) or Settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from anfu.config import Settings
from anfu.db.tables import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url") or Settings().resolved_database_url


def run() -> None:
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=url.startswith("sqlite"))
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
