"""Rate limits (docs/LIMITS.md, "Rate limits"): a token bucket per API key and per LndHub
account, kept in PostgreSQL (rate_buckets, vnode_rate_take in
vnode/db/functions/35_limits.sql) so that every vnode process on one database shares it. A
request over the rate is answered 429 rate_limited with Retry-After; never anything else."""

from __future__ import annotations

import math
from dataclasses import dataclass

import asyncpg

from vnode.errors import ApiError, ErrorCode
from vnode.settings import Settings


@dataclass(frozen=True)
class RatePolicy:
    """At most `burst` requests at once, refilled at `per_s` requests a second."""

    burst: int
    per_s: float


class RateLimited(ApiError):
    """429 rate_limited, with the seconds to wait (Retry-After, rounded up to whole seconds)."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        super().__init__(
            ErrorCode.RATE_LIMITED,
            f"too many requests; retry after {self.retry_after_s} s",
            {"retry_after_s": self.retry_after_s},
            {"Retry-After": str(self.retry_after_s)},
        )


class RateLimiter:
    """The rate limits of one deployment. With no policy, a check costs nothing (no query)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        per_key: RatePolicy | None,
        per_account: RatePolicy | None,
        per_address: RatePolicy | None = None,
    ) -> None:
        self.pool = pool
        self.per_key = per_key
        self.per_account = per_account
        self.per_address = per_address

    @classmethod
    def from_settings(cls, pool: asyncpg.Pool, settings: Settings) -> RateLimiter:
        per_key = per_account = None
        if settings.rate_limit_key_per_s is not None:
            per_key = RatePolicy(settings.rate_limit_key_burst, settings.rate_limit_key_per_s)
        if settings.rate_limit_account_per_s is not None:
            per_account = RatePolicy(
                settings.rate_limit_account_burst, settings.rate_limit_account_per_s
            )
        per_address = None
        if settings.rate_limit_address_per_s is not None:
            per_address = RatePolicy(
                settings.rate_limit_address_burst, settings.rate_limit_address_per_s
            )
        return cls(pool, per_key, per_account, per_address)

    async def check_key(self, owner: str) -> None:
        """One request of the API key `owner` (`Principal.owner`); raises RateLimited."""
        if self.per_key is not None:
            await self._take(f"key:{owner}", self.per_key)

    async def check_account(self, account: str) -> None:
        """One request of the LndHub account `account` (its login); raises RateLimited.
        For the LndHub layer to call once per request, after authenticating the account."""
        if self.per_account is not None:
            await self._take(f"lndhub:{account}", self.per_account)

    async def check_address(self, name: str) -> None:
        """One LNURL-pay callback of the Lightning Address `name` (public, and each one makes
        a node invoice and a row: docs/LNURL.md); raises RateLimited."""
        if self.per_address is not None:
            await self._take(f"address:{name}", self.per_address)

    async def _take(self, bucket: str, policy: RatePolicy) -> None:
        wait_s = await self.pool.fetchval(
            "SELECT vnode_rate_take($1, $2, $3)", bucket, float(policy.burst), policy.per_s
        )
        if wait_s:
            raise RateLimited(float(wait_s))
