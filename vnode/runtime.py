"""Where the database is: VNODE_DATABASE_URL, or the embedded cluster in the data dir."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from vnode.db.embedded import EmbeddedPostgres
from vnode.settings import Settings


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """Yield a DSN; an embedded cluster started here is stopped on exit (one running is reused)."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    cluster = EmbeddedPostgres(settings.embedded_pg_dir)
    dsn = cluster.start()
    try:
        yield dsn
    finally:
        cluster.stop()
