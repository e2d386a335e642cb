"""API keys and scopes on every endpoint: 401 without a valid key, 403 below the scope."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from harness.postgres import initialised_cluster
from tests.support import bearer, new_user_id, wait_until
from vnode.apikeys import KeyVerifier, Scope, create_key, hash_key, list_keys, revoke_key
from vnode.db.embedded import EmbeddedPostgres
from vnode.db.migrate import migrate
from vnode.db.pool import create_pool

# (method, path, lowest scope admitted, a valid body)
ENDPOINTS: list[tuple[str, str, Scope, dict[str, Any] | None]] = [
    ("POST", "/virtual_node", Scope.RECEIVE, {"user_id": 1}),
    (
        "POST",
        "/virtual_transfer",
        Scope.SPEND,
        {"from_user_id": 1, "to_user_id": 2, "amount_msat": 1},
    ),
    ("POST", "/virtual_assetbalance", Scope.READ, {"user_id": 1, "asset_id": "BTC"}),
    ("POST", "/virtual_balances", Scope.READ, {"user_id": 1}),
    ("POST", "/virtual_history", Scope.READ, {"user_id": 1}),
    ("POST", "/admin/credit", Scope.ADMIN, {"user_id": 1, "amount_msat": 1, "reason": "x"}),
    ("POST", "/admin/debit", Scope.ADMIN, {"user_id": 1, "amount_msat": 1, "reason": "x"}),
    ("GET", "/metrics", Scope.READ, None),
    ("POST", "/virtual_address", Scope.RECEIVE, {"user_id": 1, "name": "alice"}),
    ("POST", "/virtual_address_info", Scope.READ, {"user_id": 1}),
]
OPEN = ["/healthz", "/readyz", "/openapi.json", "/docs"]


def _ids(rows: list[tuple[str, str, Scope, Any]]) -> list[str]:
    return [row[1] for row in rows]


@pytest.mark.parametrize(("method", "path", "scope", "body"), ENDPOINTS, ids=_ids(ENDPOINTS))
async def test_missing_or_bad_key_is_401(
    app_client: httpx.AsyncClient, method: str, path: str, scope: Scope, body: dict[str, Any] | None
) -> None:
    for headers in (
        {"Authorization": ""},
        bearer("vnk_not-a-real-key"),
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ):
        response = await app_client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "scope", "body"), ENDPOINTS, ids=_ids(ENDPOINTS))
async def test_scopes_are_enforced(
    app_client: httpx.AsyncClient,
    scoped_keys: dict[Scope, str],
    method: str,
    path: str,
    scope: Scope,
    body: dict[str, Any] | None,
) -> None:
    for held, key in scoped_keys.items():
        response = await app_client.request(method, path, json=body, headers=bearer(key))
        if held.allows(scope):
            assert response.status_code not in (401, 403), (held, response.text)
        else:
            assert response.status_code == 403, (held, response.text)
            assert response.json()["error"]["code"] == "forbidden"


async def test_read_and_receive_keys_cannot_move_money(
    app_client: httpx.AsyncClient, scoped_keys: dict[Scope, str]
) -> None:
    alice, bob = new_user_id(), new_user_id()
    await app_client.post(
        "/admin/credit", json={"user_id": alice, "amount_msat": 5000, "reason": "t"}
    )
    for scope in (Scope.READ, Scope.RECEIVE):
        headers = bearer(scoped_keys[scope])
        moves = [
            ("/virtual_transfer", {"from_user_id": alice, "to_user_id": bob, "amount_msat": 1}),
            ("/admin/credit", {"user_id": bob, "amount_msat": 1, "reason": "x"}),
            ("/admin/debit", {"user_id": alice, "amount_msat": 1, "reason": "x"}),
        ]
        for path, body in moves:
            assert (await app_client.post(path, json=body, headers=headers)).status_code == 403
    response = await app_client.post("/virtual_assetbalance", json={"user_id": alice})
    assert response.json()["balance_msat"] == 5000


@pytest.mark.parametrize("path", OPEN)
async def test_health_and_docs_need_no_key(app_client: httpx.AsyncClient, path: str) -> None:
    response = await app_client.get(path, headers={"Authorization": ""})
    assert response.status_code == 200


async def test_key_in_query_string_is_not_accepted(
    app_client: httpx.AsyncClient, scoped_keys: dict[Scope, str]
) -> None:
    response = await app_client.get(
        f"/metrics?api_key={scoped_keys[Scope.ADMIN]}", headers={"Authorization": ""}
    )
    assert response.status_code == 401


async def test_keys_are_stored_hashed_and_listed_without_secret(
    shared_conn: asyncpg.Connection,
) -> None:
    info, key = await create_key(shared_conn, "hash-check", Scope.READ)
    stored = await shared_conn.fetchrow("SELECT * FROM api_keys WHERE id = $1", info.id)
    assert stored is not None
    assert stored["key_hash"] == hash_key(key)
    assert key not in {str(v) for v in stored.values()}
    listed = [k for k in await list_keys(shared_conn) if k.id == info.id]
    assert listed and key not in repr(listed[0]) and key.startswith(listed[0].key_prefix)


async def test_revoked_key_is_refused_at_once(
    app_client: httpx.AsyncClient, shared_conn: asyncpg.Connection
) -> None:
    info, key = await create_key(shared_conn, "revoke-me", Scope.READ)
    headers = bearer(key)
    assert (await app_client.get("/metrics", headers=headers)).status_code == 200  # now cached
    assert await revoke_key(shared_conn, info.id)
    assert not await revoke_key(shared_conn, info.id)  # already revoked

    async def refused() -> bool:
        return (await app_client.get("/metrics", headers=headers)).status_code == 401

    # The NOTIFY empties the cache long before the 30 s TTL would.
    await wait_until(refused, timeout_s=5, what="revocation to reach the service")


class DeafListener:
    """A LISTEN connection that hears nothing: the real connection, with `add_listener` kept
    from registering. It stands for a NOTIFY that has not arrived yet (queued behind other work
    on a busy process), for as long as the test needs."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    async def add_listener(self, channel: str, callback: object) -> None:
        pass

    async def remove_listener(self, channel: str, callback: object) -> None:
        pass


class DeafPool:
    """The real pool, whose connections acquired for LISTEN are DeafListeners."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    async def acquire(self, *, timeout: float | None = None) -> DeafListener:
        return DeafListener(await self._pool.acquire(timeout=timeout))

    async def release(self, conn: DeafListener, *, timeout: float | None = None) -> None:
        await self._pool.release(conn.conn, timeout=timeout)


async def test_the_process_that_revokes_a_key_refuses_it_before_any_notify(
    shared_db: str, shared_conn: asyncpg.Connection
) -> None:
    """The console revokes a key and the next request with it must be refused, whatever the
    NOTIFY is doing: it failed once in a loaded run, answering 200 right after the revocation
    (tests/integration/console/test_console_pages.py)."""
    pool = await create_pool(shared_db, min_size=1, max_size=4)
    verifier = KeyVerifier(DeafPool(pool), None, ttl_s=300)  # type: ignore[arg-type]
    await verifier.start()
    try:
        info, key = await create_key(shared_conn, "revoked-here", Scope.READ)
        assert await verifier.verify(key) is not None  # cached for 300 s
        async with pool.acquire() as conn:
            assert await verifier.revoke(conn, info.id)
        assert await verifier.verify(key) is None
    finally:
        await verifier.stop()
        await pool.close()


# --- L4: revocations that race a lookup, and a LISTEN connection that dies -----------------


class PausingPool:
    """The real pool, with one pause between an api_keys lookup and its return to the
    verifier: the seam that lets a revocation land exactly inside that window. Every query
    still runs on PostgreSQL; `lookups` counts them."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.after_lookup: Callable[[], Awaitable[None]] | None = None
        self.lookups = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        row = await self._pool.fetchrow(query, *args)
        self.lookups += 1
        hook, self.after_lookup = self.after_lookup, None
        if hook is not None:
            await hook()
        return row


async def test_l4_revocation_not_undone_by_concurrent_verify(
    shared_db: str, shared_conn: asyncpg.Connection
) -> None:
    pool = await create_pool(shared_db, min_size=1, max_size=4)
    seam = PausingPool(pool)
    verifier = KeyVerifier(seam, None, ttl_s=300)  # type: ignore[arg-type]
    await verifier.start()
    try:
        info, key = await create_key(shared_conn, "l4-race", Scope.READ)
        _, witness = await create_key(shared_conn, "l4-race-witness", Scope.READ)
        assert await verifier.verify(witness) is not None  # cached

        async def revoke_meanwhile() -> None:
            # The lookup has read the key as valid; the revocation commits and its NOTIFY
            # reaches the verifier before the verifier gets to cache what it read.
            assert await revoke_key(shared_conn, info.id)

            async def cache_emptied() -> bool:
                # The NOTIFY empties the whole cache: the witness key is looked up again.
                before = seam.lookups
                assert await verifier.verify(witness) is not None
                return seam.lookups > before

            await wait_until(cache_emptied, 10, "the revocation's NOTIFY to reach the verifier")

        seam.after_lookup = revoke_meanwhile
        # This request began before the revocation: answering it with the key is right...
        assert await verifier.verify(key) is not None
        assert seam.after_lookup is None  # (the pause did happen)
        # ...but keeping that answer for the next 300 s is not.
        assert await verifier.verify(key) is None
    finally:
        await verifier.stop()
        await pool.close()


def point_at_server(cluster: EmbeddedPostgres, link_dir: Path) -> None:
    """Make link_dir's socket name lead to the cluster's current socket (atomically).

    A restarted embedded cluster may listen in a new socket directory; the test's clients keep
    one address, as clients of a database server that restarts in place do."""
    link_dir.mkdir(exist_ok=True)
    name = ".s.PGSQL.5432"
    fresh = link_dir / "next"
    fresh.unlink(missing_ok=True)
    fresh.symlink_to(cluster.socket_dir / name)
    fresh.replace(link_dir / name)


async def test_l4_listen_resubscribes_after_db_restart(tmp_path: Path) -> None:
    """A real PostgreSQL of the test's own is restarted under a running verifier; revocations
    made afterwards are refused long before the 300 s cache TTL would expire them."""
    cluster = initialised_cluster(tmp_path / "pg" / "data")
    await asyncio.to_thread(cluster.start)
    link_dir = tmp_path / "pg-address"
    point_at_server(cluster, link_dir)
    dsn = f"postgresql://postgres@/vnode?host={link_dir}"
    pool: asyncpg.Pool | None = None
    verifier: KeyVerifier | None = None
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            (first, first_key), (second, second_key) = [
                await create_key(conn, f"l4-restart-{n}", Scope.READ) for n in (1, 2)
            ]
        finally:
            await conn.close()
        pool = await create_pool(dsn, min_size=1, max_size=4)
        verifier = KeyVerifier(pool, None, ttl_s=300, check_s=1.0)
        await verifier.start()
        assert await verifier.verify(first_key) is not None  # both cached for 300 s
        assert await verifier.verify(second_key) is not None

        await asyncio.to_thread(cluster.stop)
        await asyncio.to_thread(cluster.start)
        point_at_server(cluster, link_dir)

        async def refused(key: str) -> bool:
            assert verifier is not None
            try:
                return await verifier.verify(key) is None
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                return False  # the pool is still reconnecting

        conn = await asyncpg.connect(dsn)
        try:
            # Revoked after the restart: the key cached before it must not outlive it.
            assert await revoke_key(conn, first.id)
            await wait_until(
                lambda: refused(first_key),
                15,
                "the first revocation after the restart to be refused",
            )

            async def listening() -> bool:
                assert verifier is not None
                return verifier.listening

            await wait_until(listening, 15, "the verifier to LISTEN again")
            # Cached again with LISTEN back; from here only a NOTIFY can empty the cache.
            assert await verifier.verify(second_key) is not None
            assert await revoke_key(conn, second.id)
            await wait_until(
                lambda: refused(second_key),
                5,
                "the NOTIFY of a revocation to reach the re-subscribed verifier",
            )
        finally:
            await conn.close()
        assert verifier.resubscriptions >= 1
    finally:
        if verifier is not None:
            await verifier.stop()
        if pool is not None:
            await pool.close()
        await asyncio.to_thread(cluster.stop)
