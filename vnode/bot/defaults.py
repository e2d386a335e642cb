"""What `vnode bot` uses for a setting left unset: the data directory of the `vnode serve` it
belongs to (VNODE_DATA_DIR, default ./.vnode). Every explicit setting wins.

- vnode's URL: the one `vnode serve` published in `<data_dir>/serve.url`, else :3001;
- the API key: `<data_dir>/bot_api_key` (mode 0600), minted with scope `spend` on the first
  start, straight into the database (as `vnode keys create` does), never printed;
- PostgreSQL: the data dir's embedded cluster (joined, or started, through vnode.runtime);
- Redis: the data dir's embedded server, where `vnode serve` publishes its events.

`vnode bot --check` reports each of them (`Finding`), and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr
from redis import Redis
from redis.exceptions import RedisError

from vnode import apikeys
from vnode.apikeys import Scope
from vnode.bot.settings import DEFAULT_VNODE_URL, BotSettings
from vnode.datadir import bot_key_file, redis_socket_url, serve_url_file, write_private
from vnode.db.connect import connect
from vnode.db.migrate import migrate

BOT_KEY_NAME = "bitmask"
_CHECK_TIMEOUT_S = 3.0


def vnode_url(settings: BotSettings) -> tuple[str, str]:
    """(url, where it came from)."""
    if settings.url:
        return settings.url, "VNODE_URL"
    published = serve_url_file(settings.data_dir)
    try:
        return published.read_text().strip(), str(published)
    except OSError:
        return DEFAULT_VNODE_URL, f"default (no {published}: is vnode serve running?)"


def redis_url(settings: BotSettings) -> tuple[str, str]:
    if settings.redis_url is not None:
        return settings.redis_url.get_secret_value(), "VNODE_REDIS_URL"
    return redis_socket_url(settings.data_dir), "the data directory's embedded Redis"


def stored_key(data_dir: Path) -> str | None:
    try:
        return bot_key_file(data_dir).read_text().strip() or None
    except FileNotFoundError:
        return None


async def bot_key(data_dir: Path, dsn: str) -> str:
    """The stored key, or a new `spend` key minted into vnode's database and stored."""
    key = stored_key(data_dir)
    if key is not None:
        return key
    conn = await connect(dsn)
    try:
        await migrate(conn)  # the bot may start before vnode serve ever ran here
        _, key = await apikeys.create_key(conn, BOT_KEY_NAME, Scope.SPEND)
    finally:
        await conn.close()
    return _store(data_dir, key)


def _store(data_dir: Path, key: str) -> str:
    """Store a new key; the one stored if another bot process stored one first (ours then
    stays unused)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if write_private(bot_key_file(data_dir), key + "\n"):
        return key
    return stored_key(data_dir) or key


async def completed(settings: BotSettings, dsn: str) -> BotSettings:
    """`settings` with every unset connection setting found."""
    url, _ = vnode_url(settings)
    redis, _ = redis_url(settings)
    api_key = settings.api_key or SecretStr(await bot_key(settings.data_dir, dsn))
    return settings.model_copy(
        update={
            "url": url,
            "redis_url": SecretStr(redis),
            "database_url": settings.database_url or SecretStr(dsn),
            "api_key": api_key,
        }
    )


@dataclass(frozen=True)
class Finding:
    """One thing the bot needs: what was found (never a secret), from where, and whether it
    is usable."""

    what: str
    found: str
    source: str
    ok: bool


def _telegram(settings: BotSettings) -> Finding:
    if settings.bot_token is None:
        return Finding("bot token", "missing", "VNODE_BOT_TOKEN, from @BotFather", False)
    url = f"{settings.bot_api_url}/bot{settings.bot_token.get_secret_value()}/getMe"
    try:
        answer = httpx.get(url, timeout=_CHECK_TIMEOUT_S).json()
    except (httpx.HTTPError, ValueError) as exc:
        # The exception's text would hold the URL, and with it the token: name its kind only.
        return Finding("bot token", "set", f"{settings.bot_api_url}: {type(exc).__name__}", False)
    if not answer.get("ok"):
        return Finding("bot token", "refused", f"{settings.bot_api_url}: getMe", False)
    name = f"@{answer['result'].get('username')}"
    return Finding("bot token", name, f"getMe at {settings.bot_api_url}", True)


def _vnode(settings: BotSettings) -> Finding:
    url, source = vnode_url(settings)
    try:
        ok = httpx.get(f"{url}/healthz", timeout=_CHECK_TIMEOUT_S).status_code == 200
    except httpx.HTTPError:
        ok = False
    return Finding("vnode", url + ("" if ok else " (not answering)"), source, ok)


def _key(settings: BotSettings) -> Finding:
    if settings.api_key is not None:
        return Finding("API key", "set", "VNODE_API_KEY", True)
    path = bot_key_file(settings.data_dir)
    if stored_key(settings.data_dir) is not None:
        return Finding("API key", "stored (mode 0600)", str(path), True)
    return Finding("API key", "none yet: minted on the first start", str(path), True)


def _database(settings: BotSettings) -> Finding:
    if settings.database_url is not None:
        return Finding("PostgreSQL", "set", "VNODE_DATABASE_URL", True)
    pgdata = settings.data_dir / "pg"
    state = "initialised" if (pgdata / "PG_VERSION").exists() else "created on the first start"
    return Finding("PostgreSQL", f"embedded cluster, {state}", str(pgdata), True)


def _redis(settings: BotSettings) -> Finding:
    url, source = redis_url(settings)
    client = Redis.from_url(url, socket_timeout=_CHECK_TIMEOUT_S)
    try:
        ok = bool(client.ping())
    except RedisError:
        ok = False
    finally:
        client.close()
    shown = url if settings.redis_url is None else "set"  # an explicit URL may hold a password
    return Finding("Redis", shown + ("" if ok else " (not answering)"), source, ok)


def check(settings: BotSettings) -> list[Finding]:
    return [
        _telegram(settings),
        _vnode(settings),
        _key(settings),
        _database(settings),
        _redis(settings),
    ]
