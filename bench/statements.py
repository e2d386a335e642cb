"""`pg_stat_statements` on a bench's throwaway cluster: what PostgreSQL spent per unit of work
(a payment, a transfer), by statement, with the statements inside the money functions
(`track = all`) and the functions themselves (`track_functions = all`).

Only for a cluster started by the bench (it is restarted to preload the library); the counters
are reset before the measured run and read after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import common
from rich.table import Table

PRELOAD = "pg_stat_statements"
# Server settings for the restart: nested statements (the money functions' own) counted too,
# and the functions' own time (pg_stat_user_functions).
SETTINGS = (
    f"shared_preload_libraries={PRELOAD}",
    "pg_stat_statements.track=all",
    "pg_stat_statements.max=2000",
    "track_functions=all",
)


@dataclass(frozen=True)
class Statement:
    """One statement's figures per unit of work (`per`)."""

    query: str
    toplevel: bool
    calls: float
    total_us: float
    mean_us: float
    rows: float
    wal_bytes: float


@dataclass(frozen=True)
class Function:
    """One function's time per unit of work: with what it calls (total) and alone (self)."""

    name: str
    calls: float
    total_us: float
    self_us: float


def reset(dsn: str) -> None:
    """Zero the counters (created in `dsn`'s database first if needed)."""
    common.psql(dsn, "-c", f"CREATE EXTENSION IF NOT EXISTS {PRELOAD}")
    common.psql(dsn, "-tAc", "SELECT pg_stat_statements_reset(), pg_stat_reset()")


def top_statements(dsn: str, per: int, limit: int = 25) -> list[Statement]:
    """The statements of `dsn`'s database by total execution time, per unit of `per`."""
    n = max(per, 1)
    text = common.psql(
        dsn,
        "-tA",
        "-F",
        "\x1f",
        "-R",
        "\x1e",
        "-c",
        "SELECT regexp_replace(query, '\\s+', ' ', 'g'), toplevel, calls, total_exec_time, "
        "rows, wal_bytes FROM pg_stat_statements "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "ORDER BY total_exec_time DESC LIMIT 100",
    )
    rows = []
    for record in text.split("\x1e"):
        if not record.strip():
            continue
        query, toplevel, calls, total_ms, nrows, wal = record.strip("\n").split("\x1f")
        c = int(calls)
        rows.append(
            Statement(
                query,
                toplevel == "t",
                c / n,
                1000 * float(total_ms) / n,
                1000 * float(total_ms) / max(c, 1),
                int(nrows) / n,
                float(wal) / n,
            )
        )
    return rows[:limit]


def toplevel_total(dsn: str, per: int) -> tuple[float, float]:
    """Calls and execution time (us) of every top-level statement of `dsn`'s database, per unit
    of `per`: the sum the per-statement table splits (planning and the protocol not included)."""
    n = max(per, 1)
    line = common.psql(
        dsn,
        "-tA",
        "-F",
        "|",
        "-c",
        "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) "
        "FROM pg_stat_statements WHERE toplevel "
        "AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    ).strip()
    calls, total_ms = line.split("|")
    return float(calls) / n, 1000 * float(total_ms) / n


def functions(dsn: str, per: int) -> list[Function]:
    """pg_stat_user_functions per unit of `per`, most total time first."""
    n = max(per, 1)
    text = common.psql(
        dsn,
        "-tA",
        "-F",
        "|",
        "-c",
        "SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions "
        "ORDER BY total_time DESC",
    )
    out = []
    for line in text.splitlines():
        name, calls, total_ms, self_ms = line.split("|")
        out.append(
            Function(name, int(calls) / n, 1000 * float(total_ms) / n, 1000 * float(self_ms) / n)
        )
    return out


def statements_table(rows: list[Statement], what: str, width: int = 90) -> Table:
    table = Table(title=f"pg_stat_statements per {what} (by total time; 'in' = inside a function)")
    for column in ("statement", "level", "calls", "us", "mean us", "rows", "WAL bytes"):
        table.add_column(column, justify="left" if column == "statement" else "right")
    for row in rows:
        query = row.query if len(row.query) <= width else row.query[: width - 3] + "..."
        table.add_row(
            query,
            "top" if row.toplevel else "in",
            f"{row.calls:.2f}",
            f"{row.total_us:,.0f}",
            f"{row.mean_us:,.0f}",
            f"{row.rows:.2f}",
            f"{row.wal_bytes:,.0f}",
        )
    return table


def functions_table(rows: list[Function], what: str) -> Table:
    table = Table(title=f"pg_stat_user_functions per {what}")
    for column in ("function", "calls", "total us", "self us"):
        table.add_column(column, justify="left" if column == "function" else "right")
    for row in rows:
        table.add_row(row.name, f"{row.calls:.2f}", f"{row.total_us:,.0f}", f"{row.self_us:,.0f}")
    return table
