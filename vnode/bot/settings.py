"""The bot's settings, read from VNODE_* environment variables (no secret has a default)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class BotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VNODE_", extra="ignore")

    bot_token: SecretStr
    # The Telegram Bot API; tests and self-hosted Bot API servers point it elsewhere.
    bot_api_url: str = "https://api.telegram.org"
    # vnode's HTTP API and a key of scope `spend` (enough to read, receive and pay).
    url: str = "http://127.0.0.1:3001"
    api_key: SecretStr
    redis_url: SecretStr
    # Profiles live in the `bitmask` schema of this database (vnode's own, or another).
    database_url: SecretStr
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
