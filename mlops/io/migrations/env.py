"""Alembic environment for the metadata store.

``MetadataStore.migrate()`` passes an open connection in ``config.attributes["connection"]``;
the ``alembic`` command line works too when ``sqlalchemy.url`` is set (``-x url=...`` or the ini).
"""

from alembic import context
from sqlalchemy import create_engine

from mlops.io.metadata import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass -x url=<SQLAlchemy URL> or use MetadataStore.migrate()")
    return url


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    _configure(connection)
else:
    engine = create_engine(_url())
    with engine.connect() as connection:
        _configure(connection)
    engine.dispose()
