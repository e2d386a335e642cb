"""The bot's settings, read from VNODE_* environment variables (no secret has a default).

vnode's URL, the API key, Redis and PostgreSQL may be left unset: `vnode bot` then finds them
in the data directory `vnode serve` uses (vnode/bot/defaults.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_VNODE_URL = "http://127.0.0.1:3001"  # `vnode serve`'s default port


class BotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VNODE_", extra="ignore")

    # Required to run; optional here so that `vnode bot --check` can say it is missing.
    bot_token: SecretStr | None = None
    # The Telegram Bot API; tests, `vnode demo` and self-hosted Bot API servers point it
    # elsewhere.
    bot_api_url: str = "https://api.telegram.org"
    # The data directory of the `vnode serve` this bot belongs to (the same VNODE_DATA_DIR).
    data_dir: Path = Path(".vnode")
    # vnode's HTTP API; unset: the URL the data dir's `vnode serve` published, else :3001.
    url: str | None = None
    # A key of scope `spend` (enough to read, receive and pay); unset: the one stored in the
    # data dir, minted on the first start.
    api_key: SecretStr | None = None
    # Unset: the data dir's embedded Redis server (the one `vnode serve` publishes events to).
    redis_url: SecretStr | None = None
    # Profiles live in the `bitmask` schema of this database (vnode's own, or another); unset:
    # the data dir's embedded PostgreSQL.
    database_url: SecretStr | None = None
    log_level: str = "INFO"

    # Where vnode's events come from: its Redis stream (consumer group) or signed webhooks.
    bot_events: Literal["redis", "webhook"] = "redis"
    redis_stream_key: str = "vnode:events"
    bot_consumer_group: str = "bitmask"
    # A fixed consumer name: after a restart the bot takes back what it had read but not
    # acknowledged, instead of leaving it pending under a name nobody uses again.
    bot_consumer_name: str = "bitmask-1"
    # Events older than this are acknowledged without a message (a bot started late, or a
    # replay of the whole stream, does not flood users with old news).
    bot_notify_max_age_s: int = Field(default=86_400, ge=1)
    bot_webhook_host: str = "127.0.0.1"
    bot_webhook_port: int = Field(default=8443, ge=1, le=65535)
    bot_webhook_path: str = "/vnode/events"
    bot_webhook_secret: SecretStr | None = None
    bot_webhook_window_s: int = Field(default=300, ge=1)

    # How long a Confirm / Cancel keyboard stays valid.
    bot_confirm_ttl_s: int = Field(default=120, ge=5)
    # Per user: at most this many updates in the window; the rest get one "slow down".
    bot_rate_limit: int = Field(default=20, ge=1)
    bot_rate_window_s: int = Field(default=10, ge=1)
    # A @username resolves only to a profile seen holding it within this many days: a holder
    # who renamed away is not seen doing so, and after this long the name may be someone
    # else's. Older ones are refused (a reply or an id still works).
    bot_username_fresh_days: int = Field(default=30, ge=1)
    bot_history_page: int = Field(default=5, ge=1, le=20)
    # Invoices the bot makes for /receive.
    bot_invoice_expiry_s: int = Field(default=3600, ge=60)


class MissingSetting(RuntimeError):
    """A setting the bot cannot run without and could not find."""


def required(value: SecretStr | None, variable: str) -> str:
    if value is None:
        raise MissingSetting(f"{variable} is not set and was not found in the data directory")
    return value.get_secret_value()
