"""User profiles and the bot's bookkeeping, in the `bitmask` schema of PostgreSQL.

Users are their numeric Telegram id. A @username is only a pointer to the profile that last
showed it: when someone is seen with a username, every other profile loses it in the same
transaction, so a username that changed hands resolves to its new owner, never to both, and
the bot never guesses an id for a username nobody has shown it.

A username moves only when the bot sees its new holder, so the one it points to can be a
former holder who renamed away without talking to the bot since. Every write stores the
username the user showed together with `last_seen`, so `last_seen` is also when the profile
was last seen holding its username: the bot trusts a username only that long (see
recipients.py).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from vnode.db.migrate import MigrationSet, migrate
from vnode.db.pool import DbConnection

BOT_MIGRATIONS = MigrationSet(
    directory=Path(__file__).parent / "migrations",
    table="bitmask.schema_migrations",
    lock_key=0x626974_6D61736B,
)
# A profile seen again within this many seconds with nothing changed is not written again.
_TOUCH_EVERY_S = 60.0
_TOUCH_CACHE_MAX = 50_000


@dataclass(frozen=True)
class Profile:
    user_id: int
    username: str | None
    first_name: str
    last_name: str | None
    language: str | None
    # When the user was last seen, holding `username` (every write sets both).
    last_seen: datetime

    @property
    def label(self) -> str:
        """How the bot names this user to others."""
        return f"@{self.username}" if self.username else self.first_name or f"vn_{self.user_id}"

    def seen_within(self, days: int) -> bool:
        return self.last_seen >= datetime.now(UTC) - timedelta(days=days)


@dataclass(frozen=True)
class Seen:
    """What a Telegram update tells about its sender."""

    user_id: int
    username: str | None
    first_name: str
    last_name: str | None
    language: str | None


async def migrate_profiles(conn: DbConnection) -> None:
    await conn.execute("CREATE SCHEMA IF NOT EXISTS bitmask")
    await migrate(conn, BOT_MIGRATIONS)


class ProfileStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._touched: dict[int, tuple[Seen, float]] = {}

    async def touch(self, seen: Seen) -> None:
        """Record that the user was seen (first and last seen, current name and language)."""
        cached = self._touched.get(seen.user_id)
        now = time.monotonic()
        if cached is not None and cached[0] == seen and now - cached[1] < _TOUCH_EVERY_S:
            return
        try:
            await self._write(seen)
        except asyncpg.UniqueViolationError:
            # Someone else took the same username in a concurrent touch; the later write wins.
            await self._write(seen)
        if len(self._touched) > _TOUCH_CACHE_MAX:
            self._touched.clear()
        self._touched[seen.user_id] = (seen, now)

    async def _write(self, seen: Seen) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            if seen.username is not None:
                await conn.execute(
                    "UPDATE bitmask.profiles SET username = NULL "
                    "WHERE lower(username) = lower($1) AND user_id <> $2",
                    seen.username,
                    seen.user_id,
                )
            await conn.execute(
                "INSERT INTO bitmask.profiles AS p "
                "  (user_id, username, first_name, last_name, language) "
                "VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (user_id) DO UPDATE SET username = EXCLUDED.username, "
                "  first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, "
                "  language = coalesce(EXCLUDED.language, p.language), last_seen = now()",
                seen.user_id,
                seen.username,
                seen.first_name,
                seen.last_name,
                seen.language,
            )

    async def get(self, user_id: int) -> Profile | None:
        row = await self.pool.fetchrow(
            "SELECT user_id, username, first_name, last_name, language, last_seen "
            "FROM bitmask.profiles WHERE user_id = $1",
            user_id,
        )
        return None if row is None else Profile(**dict(row))

    async def by_username(self, username: str) -> Profile | None:
        row = await self.pool.fetchrow(
            "SELECT user_id, username, first_name, last_name, language, last_seen "
            "FROM bitmask.profiles WHERE lower(username) = lower($1)",
            username,
        )
        return None if row is None else Profile(**dict(row))

    # --- notifications: each event once -------------------------------------------------

    async def claim_event(self, event_id: str, user_id: int, event_type: str) -> bool:
        """True for the first claim of an event, False for every later delivery of it."""
        claimed = await self.pool.fetchval(
            "INSERT INTO bitmask.notified (event_id, user_id, event_type) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING true",
            uuid.UUID(event_id),
            user_id,
            event_type,
        )
        return bool(claimed)

    async def release_event(self, event_id: str) -> None:
        """Undo a claim whose message could not be sent, so a redelivery tries again."""
        await self.pool.execute(
            "DELETE FROM bitmask.notified WHERE event_id = $1", uuid.UUID(event_id)
        )

    # --- the message that shows a payment's progress --------------------------------------

    async def remember_payment_message(
        self, payment_hash: str, user_id: int, chat_id: int, message_id: int
    ) -> None:
        await self.pool.execute(
            "INSERT INTO bitmask.payment_messages (payment_hash, user_id, chat_id, message_id) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (payment_hash, user_id) DO UPDATE "
            "SET chat_id = EXCLUDED.chat_id, message_id = EXCLUDED.message_id, "
            "final_told = false",  # a new attempt at the same invoice has its own end
            payment_hash,
            user_id,
            chat_id,
            message_id,
        )

    async def claim_final(self, payment_hash: str, user_id: int) -> tuple[int, int] | None:
        """Claim the telling of a payment's final state: the first caller gets the chat and
        message of its confirmation; a later caller, or a payment the bot did not start,
        gets None."""
        row = await self.pool.fetchrow(
            "UPDATE bitmask.payment_messages SET final_told = true "
            "WHERE payment_hash = $1 AND user_id = $2 AND NOT final_told "
            "RETURNING chat_id, message_id",
            payment_hash,
            user_id,
        )
        return None if row is None else (row["chat_id"], row["message_id"])

    async def release_final(self, payment_hash: str, user_id: int) -> None:
        """Undo `claim_final` when the message telling the end could not be sent."""
        await self.pool.execute(
            "UPDATE bitmask.payment_messages SET final_told = false "
            "WHERE payment_hash = $1 AND user_id = $2",
            payment_hash,
            user_id,
        )

    async def knows_payment(self, payment_hash: str, user_id: int) -> bool:
        return bool(
            await self.pool.fetchval(
                "SELECT true FROM bitmask.payment_messages "
                "WHERE payment_hash = $1 AND user_id = $2",
                payment_hash,
                user_id,
            )
        )
