"""Rate limits per API key and per LndHub account (docs/LIMITS.md, "Rate limits"): a token
bucket in PostgreSQL shared by every process, answered 429 rate_limited with Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import make_settings
from tests.support import ADMIN_KEY, bearer, new_user_id
from vnode.apikeys import Scope, create_key
from vnode.app import create_app
from vnode.limits.rate import RateLimited, RateLimiter, RatePolicy


@pytest.fixture
async def pools(fresh_db: str) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    """Two pools on one database: two vnode processes, as far as the buckets can tell."""
    one = await asyncpg.create_pool(fresh_db, min_size=1, max_size=8)
    two = await asyncpg.create_pool(fresh_db, min_size=1, max_size=8)
    assert one is not None and two is not None
    yield one, two
    await one.close()
    await two.close()


async def test_bucket_allows_the_burst_then_says_how_long_to_wait(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    pool = pools[0]
    waits = [await pool.fetchval("SELECT vnode_rate_take('t', 3, 0.5)") for _ in range(4)]
    assert waits[:3] == [0, 0, 0]
    # Empty: one token comes back in 1 / 0.5 = 2 s (a little less, time has passed).
    assert 1.5 < waits[3] <= 2.0
    # Another bucket is untouched.
    assert await pool.fetchval("SELECT vnode_rate_take('other', 3, 0.5)") == 0


async def test_bucket_refills_at_its_rate(pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    pool = pools[0]
    assert await pool.fetchval("SELECT vnode_rate_take('r', 1, 1000)") == 0
    # 1000 a second: a token is back within milliseconds (polled, never slept on).
    for _ in range(1000):
        if await pool.fetchval("SELECT vnode_rate_take('r', 1, 1000)") == 0:
            break
    else:
        pytest.fail("the bucket never refilled")


async def test_concurrent_takes_from_two_processes_share_one_bucket(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    limiters = [RateLimiter(pool, RatePolicy(burst=5, per_s=0.001), None) for pool in pools]

    async def one(i: int) -> bool:
        try:
            await limiters[i % 2].check_key("shared")
        except RateLimited as exc:
            assert exc.retry_after_s >= 1 and exc.headers["Retry-After"] == str(exc.retry_after_s)
            return False
        return True

    passed = await asyncio.gather(*(one(i) for i in range(20)))
    assert sum(passed) == 5


async def test_lndhub_accounts_have_buckets_of_their_own(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    limiter = RateLimiter(pools[0], RatePolicy(1, 0.001), RatePolicy(2, 0.001))
    await limiter.check_account("alice")
    await limiter.check_account("alice")
    with pytest.raises(RateLimited):
        await limiter.check_account("alice")
    await limiter.check_account("bob")
    await limiter.check_key("alice")  # a key named like an account: another bucket


async def test_no_policy_no_query(pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    limiter = RateLimiter(pools[0], None, None)
    for _ in range(100):
        await limiter.check_key("k")
        await limiter.check_account("a")
    assert await pools[0].fetchval("SELECT count(*) FROM rate_buckets") == 0


# --- through the API ------------------------------------------------------------------------


@pytest.fixture
async def limited_app(fresh_db: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_path, rate_limit_key_per_s=0.001, rate_limit_key_burst=3)
    app = create_app(settings, fresh_db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://vnode"
        ) as client,
    ):
        yield client


async def test_a_key_over_its_rate_gets_429_with_retry_after(
    limited_app: httpx.AsyncClient, fresh_db: str
) -> None:
    conn = await asyncpg.connect(fresh_db)
    try:
        _, read_key = await create_key(conn, "reader", Scope.READ)
        _, other_key = await create_key(conn, "other", Scope.READ)
    finally:
        await conn.close()
    user = new_user_id()
    body = {"user_id": user}
    # Unauthenticated requests are refused 401 and cost the key nothing.
    for _ in range(5):
        assert (await limited_app.post("/virtual_assetbalance", json=body)).status_code == 401
    headers = bearer(read_key)
    statuses = [
        (await limited_app.post("/virtual_assetbalance", json=body, headers=headers)).status_code
        for _ in range(3)
    ]
    assert statuses == [404] * 3  # unknown user: answered, and counted
    limited = await limited_app.post("/virtual_assetbalance", json=body, headers=headers)
    assert limited.status_code == 429, limited.text
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["retry_after_s"] == int(limited.headers["Retry-After"])
    # A FastAPI route (not the fast path) is limited by the same bucket.
    history = await limited_app.post("/virtual_history", json=body, headers=headers)
    assert history.status_code == 429 and "Retry-After" in history.headers
    # Another key has its own bucket.
    other = await limited_app.post("/virtual_assetbalance", json=body, headers=bearer(other_key))
    assert other.status_code == 404


async def test_rate_limited_is_documented_on_every_operation(
    limited_app: httpx.AsyncClient,
) -> None:
    spec = (await limited_app.get("/openapi.json", headers=bearer(ADMIN_KEY))).json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if "401" not in operation["responses"]:
                continue  # no key, no key's rate (/healthz)
            if path == "/lndhub/auth":
                continue  # a login: no account yet to charge (docs/LIMITS.md)
            if "429" not in operation["responses"]:
                pytest.fail(f"{method} {path} does not document 429")
            description = operation["responses"]["429"]["description"]
            # LndHub documents its own error bodies (LndHub code 6, never 1).
            assert "rate_limited" in description or (
                path.startswith("/lndhub/") and "too many requests" in description
            ), (path, description)
