"""PostgreSQL connection strings."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def with_database(dsn: str, database: str) -> str:
    """The same server, another database (keeps ?host=/socket/dir and credentials)."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


def database_of(dsn: str) -> str:
    """The database a DSN names (its path; a socket directory in ?host= has slashes too)."""
    return urlsplit(dsn).path.lstrip("/")
