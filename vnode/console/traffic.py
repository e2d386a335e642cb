"""Traffic over time, from the database: transfers, external payments, invoices paid, volume per
asset and payment latency, for the last hour, day and 30 days.

Counted per minute by one query over the journal (virtual_transactions), ln_payments and
ln_receipts, each read by its time index. A worker (`roll_up`, in every `vnode serve`) keeps
the counts of minutes at least ROLLUP_LAG old in console_traffic; a page reads those rows,
binned in SQL, plus the raw rows of the newest minutes. So the figures survive restarts and
every process shows the same ones. Latency is counted in power-of-two buckets of
milliseconds, which add up across minutes exactly; p50 and p99 are read off the summed
buckets (the upper edge of the bucket the percentile falls in: within a factor of two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from vnode.domain.ids import BTC

ROLLUP_LAG = timedelta(minutes=2)  # a transaction still open after this is not counted
ROLLUP_CHUNK = timedelta(days=1)  # the most one pass catches up (a first start on old data)
LATENCY_BUCKETS = 25  # 1 ms .. 2^25 ms (9 h)
_LOCK = 7_014_014  # pg_try_advisory_xact_lock key: one roll-up at a time across processes
_ROLL_UP = (
    "INSERT INTO console_traffic (width_s, bucket, series, asset_id, count, volume) "
    "SELECT 60, minute, series, asset_id, n, volume FROM ({aggregate}) counted "
    "ON CONFLICT (width_s, bucket, series, asset_id) DO UPDATE "
    "SET count = excluded.count, volume = excluded.volume"
)
# Complete hours [$1, $2) from their minutes: a 30-day page reads 720 hours, not 43,200 minutes.
_ROLL_UP_HOURS = (
    "INSERT INTO console_traffic (width_s, bucket, series, asset_id, count, volume) "
    "SELECT 3600, date_trunc('hour', bucket), series, asset_id, sum(count), sum(volume) "
    "FROM console_traffic WHERE width_s = 60 AND bucket >= $1 AND bucket < $2 "
    "GROUP BY 2, 3, 4 "
    "ON CONFLICT (width_s, bucket, series, asset_id) DO UPDATE "
    "SET count = excluded.count, volume = excluded.volume"
)

# (minute, series, asset_id, count, volume) for [$1, $2).
_AGGREGATE = """
SELECT date_trunc('minute', created_at) AS minute, 'transfers' AS series, asset_id,
       count(*) AS n, sum(amount)::numeric AS volume
FROM virtual_transactions WHERE created_at >= $1 AND created_at < $2 AND kind = 'transfer'
GROUP BY 1, 3
UNION ALL
SELECT date_trunc('minute', created_at), 'volume', asset_id, count(*), sum(amount)
FROM virtual_transactions WHERE created_at >= $1 AND created_at < $2
  AND kind IN ('transfer', 'payment_sent', 'internal_payment', 'invoice_receipt', 'rgb_receipt')
GROUP BY 1, 3
UNION ALL
SELECT date_trunc('minute', finished_at), 'payments_' || status, coalesce(asset_id, 'BTC'),
       count(*), sum(coalesce(asset_amount, amount_msat))
FROM ln_payments WHERE kind = 'external' AND finished_at >= $1 AND finished_at < $2
  AND status IN ('succeeded', 'failed')
GROUP BY 1, 2, 3
UNION ALL
SELECT date_trunc('minute', created_at), 'payments_started', coalesce(asset_id, 'BTC'),
       count(*), sum(coalesce(asset_amount, amount_msat))
FROM ln_payments WHERE kind = 'external' AND created_at >= $1 AND created_at < $2
GROUP BY 1, 3
UNION ALL
SELECT date_trunc('minute', created_at), 'invoices_paid', 'BTC', count(*), sum(amount_msat)
FROM ln_receipts WHERE created_at >= $1 AND created_at < $2
GROUP BY 1
UNION ALL
SELECT date_trunc('minute', finished_at), 'latency', lpad(b::text, 2, '0'), count(*), 0
FROM (SELECT finished_at,
             least(24, greatest(0, floor(log(2, greatest(1,
                 extract(epoch FROM finished_at - created_at) * 1000)::numeric))))::int AS b
      FROM ln_payments WHERE kind = 'external' AND finished_at >= $1 AND finished_at < $2
        AND status IN ('succeeded', 'failed')) timed
GROUP BY 1, 3
"""

# Payments not final yet, by the minute they started: the present, never rolled up.
_PENDING = """
SELECT date_trunc('minute', created_at) AS minute, 'payments_pending' AS series,
       coalesce(asset_id, 'BTC') AS asset_id, count(*) AS n, 0::numeric AS volume
FROM ln_payments WHERE status = 'pending' AND kind = 'external' AND created_at >= $1
GROUP BY 1, 3
"""


@dataclass(frozen=True)
class Span:
    seconds: int
    step_s: int

    @property
    def buckets(self) -> int:
        return self.seconds // self.step_s


WINDOWS = {
    "hour": Span(3600, 60),
    "day": Span(86400, 15 * 60),
    "month": Span(30 * 86400, 6 * 3600),
}


async def roll_up(pool: asyncpg.Pool, *, through: datetime | None = None) -> int:
    """Count the minutes not rolled up yet that are ROLLUP_LAG old (or, given `through`, those
    before it: for tests and tools that know no transaction is open); returns how many."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LOCK):
            return 0  # another process is at it
        start = await conn.fetchval(
            "SELECT coalesce(rolled_through, date_trunc('minute', least("
            "  (SELECT min(created_at) FROM virtual_transactions),"
            "  (SELECT min(created_at) FROM ln_payments),"
            "  (SELECT min(created_at) FROM ln_receipts)))) "
            "FROM console_traffic_state WHERE id = 1 FOR UPDATE"
        )
        now = await conn.fetchval("SELECT now()")
        end = _minute(now - ROLLUP_LAG if through is None else through)
        if start is None:  # nothing ever happened: start from here
            start = end
        end = min(end, start + ROLLUP_CHUNK)
        if end > start:
            await conn.execute(_ROLL_UP.format(aggregate=_AGGREGATE), start, end)
            # The hours this pass completed (an hour begun in an earlier pass is summed again
            # whole: the same minutes, the same sums).
            first_hour, done_hours = _hour(start), _hour(end)
            if done_hours > first_hour:
                await conn.execute(_ROLL_UP_HOURS, first_hour, done_hours)
        await conn.execute("UPDATE console_traffic_state SET rolled_through = $1", max(start, end))
        return int((end - start).total_seconds() // 60) if end > start else 0


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


@dataclass
class Figures:
    """Per bucket, the counts and volumes of each (series, asset), and latency buckets."""

    span: Span
    times: list[datetime]
    counts: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    volumes: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, index: int, series: str, asset_id: str, count: int, volume: float) -> None:
        if not 0 <= index < len(self.times):
            return
        key = (series, asset_id)
        if key not in self.counts:
            self.counts[key] = [0] * len(self.times)
            self.volumes[key] = [0.0] * len(self.times)
        self.counts[key][index] += count
        self.volumes[key][index] += volume

    def total(self, series: str) -> list[float | None]:
        sums = [0.0] * len(self.times)
        for (name, _asset), values in self.counts.items():
            if name == series:
                sums = [a + b for a, b in zip(sums, values, strict=True)]
        return list(sums)

    def assets(self) -> list[str]:
        found = {asset for name, asset in self.volumes if name == "volume"}
        return sorted(found, key=lambda a: (a != BTC, a))

    def latency(self, quantile: float) -> list[float | None]:
        buckets = sorted(asset for name, asset in self.counts if name == "latency")
        out: list[float | None] = []
        for i in range(len(self.times)):
            counts = [(int(b), self.counts[("latency", b)][i]) for b in buckets]
            total = sum(n for _, n in counts)
            if total == 0:
                out.append(None)
                continue
            rank = math.ceil(quantile * total)
            seen = 0
            for bucket, n in counts:
                seen += n
                if seen >= rank:
                    out.append(float(2 ** (bucket + 1)))
                    break
        return out

    def plots(self) -> list[tuple[str, dict[str, list[float | None]], str]]:
        """(title, series, unit) of each plot the traffic page draws."""
        plots: list[tuple[str, dict[str, list[float | None]], str]] = [
            ("Transfers", {"transfers": self.total("transfers")}, "per bucket"),
            (
                "External payments",
                {
                    "succeeded": self.total("payments_succeeded"),
                    "failed": self.total("payments_failed"),
                    "pending": self.total("payments_pending"),
                },
                "per bucket",
            ),
            ("Invoices paid", {"invoices paid": self.total("invoices_paid")}, "per bucket"),
        ]
        for asset in self.assets():
            values = self.volumes[("volume", asset)]
            if asset == BTC:
                plots.append(("Volume, BTC", {"BTC": [v / 1000 for v in values]}, "sat"))
            else:
                plots.append((f"Volume, {asset[:16]}…", {asset[:16]: list(values)}, "units"))
        plots.append(
            (
                "External payment latency",
                {"p50": self.latency(0.5), "p99": self.latency(0.99)},
                "ms (≤)",
            )
        )
        return plots


async def figures(pool: asyncpg.Pool, span: Span) -> Figures:
    now = await pool.fetchval("SELECT now()")
    assert isinstance(now, datetime)
    step = span.step_s
    end_epoch = (int(now.timestamp()) // step + 1) * step
    start_epoch = end_epoch - span.buckets * step
    start = datetime.fromtimestamp(start_epoch, UTC)
    result = Figures(
        span, [datetime.fromtimestamp(start_epoch + i * step, UTC) for i in range(span.buckets)]
    )
    through = await pool.fetchval("SELECT rolled_through FROM console_traffic_state WHERE id = 1")
    live_from = start if through is None else max(start, through)
    if through is not None and through > start:
        # Binned in SQL. Windows in steps of hours read hour rows up to the last complete hour.
        minutes_from = start
        if step % 3600 == 0:
            minutes_from = max(start, _hour(through))
            await _add_rolled(result, pool, 3600, start, minutes_from, start_epoch, step)
        await _add_rolled(result, pool, 60, minutes_from, through, start_epoch, step)
    live = await pool.fetch(_AGGREGATE, live_from, now + timedelta(minutes=1))
    live += await pool.fetch(_PENDING, start)
    for row in live:
        index = (int(row["minute"].timestamp()) - start_epoch) // step
        result.add(index, row["series"], row["asset_id"], row["n"], float(row["volume"] or 0))
    return result


async def _add_rolled(
    result: Figures,
    pool: asyncpg.Pool,
    width_s: int,
    low: datetime,
    high: datetime,
    start_epoch: int,
    step: int,
) -> None:
    if high <= low:
        return
    rows = await pool.fetch(
        "SELECT floor((extract(epoch FROM bucket) - $4) / $5)::int AS i, series, asset_id, "
        "sum(count)::bigint AS n, sum(volume)::float8 AS volume FROM console_traffic "
        "WHERE width_s = $1 AND bucket >= $2 AND bucket < $3 GROUP BY 1, 2, 3",
        width_s,
        low,
        high,
        start_epoch,
        step,
    )
    for row in rows:
        result.add(row["i"], row["series"], row["asset_id"], row["n"], row["volume"])
