"""The `vnode` command line against a real database: keys, admin funding, migrate, status."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import asyncpg
import httpx
from rich.console import Console

from tests.conftest import TEST_SEED
from tests.support import VNODE, ServeProcess, bearer, new_user_id, wait_until
from vnode.cli_status import exit_code, render
from vnode.client import Readiness

_KEY = re.compile(r"vnk_[A-Za-z0-9_-]{20,}")


def vnode(
    dsn: str, tmp_path: Path, *args: str, env: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run the CLI on `dsn`; `env` adds NAME=VALUE settings."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VNODE_")}
    environment.update(
        {
            "VNODE_DATABASE_URL": dsn,
            "VNODE_MASTER_SEED": TEST_SEED,
            # no node unless a test names one (port 9 refuses at once)
            "VNODE_NODE": "sim",
            "VNODE_RLN_URL": "http://127.0.0.1:9",
        }
    )
    environment.update(dict(item.split("=", 1) for item in env))
    return subprocess.run(
        [VNODE, *args, "--data-dir", str(tmp_path)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_keys_create_list_revoke(fresh_db: str, tmp_path: Path) -> None:
    created = vnode(fresh_db, tmp_path, "keys", "create", "--scope", "spend", "--name", "bot")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert re.fullmatch(r"vnk_[A-Za-z0-9_-]{40,}", key)
    listed = vnode(fresh_db, tmp_path, "keys", "list")
    assert "bot" in listed.stdout and "spend" in listed.stdout
    assert key not in listed.stdout  # only a prefix is ever shown
    conn = await asyncpg.connect(fresh_db)
    key_id = await conn.fetchval("SELECT id FROM api_keys WHERE name = 'bot'")
    await conn.close()

    server = ServeProcess(fresh_db, tmp_path / "serve", extra_env={"VNODE_MASTER_SEED": TEST_SEED})
    try:
        await server.wait_ready()
        async with httpx.AsyncClient(base_url=server.url, headers=bearer(key)) as client:
            ok = await client.post("/virtual_node", json={"user_id": 5})
            assert ok.status_code == 200
            revoked = vnode(fresh_db, tmp_path, "keys", "revoke", str(key_id))
            assert revoked.returncode == 0, revoked.stderr

            async def refused() -> bool:
                return (await client.post("/virtual_node", json={"user_id": 5})).status_code == 401

            # The other process hears the revocation by NOTIFY, well before its cache TTL.
            await wait_until(refused, timeout_s=5, what="revocation to reach vnode serve")
    finally:
        server.stop()
    assert vnode(fresh_db, tmp_path, "keys", "revoke", str(key_id)).returncode == 1


async def test_admin_credit_and_debit(fresh_db: str, tmp_path: Path) -> None:
    user = str(new_user_id())
    credit = vnode(
        fresh_db,
        tmp_path,
        "admin",
        "credit",
        user,
        "--amount",
        "5000",
        "--reason",
        "welcome bonus",
        "--idempotency-key",
        "bonus-1",
    )
    assert credit.returncode == 0, credit.stderr
    assert '"balance_msat": 5000' in credit.stdout
    replay = vnode(
        fresh_db,
        tmp_path,
        "admin",
        "credit",
        user,
        "--amount",
        "5000",
        "--reason",
        "welcome bonus",
        "--idempotency-key",
        "bonus-1",
    )
    assert replay.returncode == 0 and '"balance_msat": 5000' in replay.stdout
    debit = vnode(
        fresh_db, tmp_path, "admin", "debit", user, "--amount", "6000", "--reason", "too much"
    )
    assert debit.returncode == 1 and "insufficient_balance" in debit.stderr
    bad = vnode(fresh_db, tmp_path, "admin", "credit", user, "--amount", "0", "--reason", "x")
    assert bad.returncode == 2
    conn = await asyncpg.connect(fresh_db)
    try:
        assert (
            await conn.fetchval(
                "SELECT spendable FROM ln_user_balances WHERE user_id = $1", int(user)
            )
            == 5000
        )
        memo = await conn.fetchval(
            "SELECT memo FROM ln_user_transactions WHERE user_id = $1", int(user)
        )
        assert memo == "welcome bonus"
    finally:
        await conn.close()
    audit = vnode(fresh_db, tmp_path, "audit")
    assert audit.returncode == 0 and "audit clean" in audit.stdout


def test_migrate_command(fresh_db: str, tmp_path: Path) -> None:
    result = vnode(fresh_db, tmp_path, "migrate")
    assert result.returncode == 0 and "migrations current" in result.stdout


def test_audit_compares_liabilities_with_the_node(
    fresh_db: str, sim_node: str, tmp_path: Path
) -> None:
    env_node = ("VNODE_NODE=sim", f"VNODE_RLN_URL={sim_node}")
    user = str(new_user_id())
    assert (
        vnode(
            fresh_db, tmp_path, "admin", "credit", user, "--amount", "5000", "--reason", "small"
        ).returncode
        == 0
    )
    solvent = vnode(fresh_db, tmp_path, "audit", env=env_node)
    assert solvent.returncode == 0, solvent.stdout
    assert "solvency" in solvent.stdout and "audit clean" in solvent.stdout
    # Owe users more than the simulated node's 10 BTC of outbound liquidity.
    assert (
        vnode(
            fresh_db,
            tmp_path,
            "admin",
            "credit",
            user,
            "--amount",
            str(2 * 10**12),
            "--reason",
            "more than the node holds",
        ).returncode
        == 0
    )
    short = vnode(fresh_db, tmp_path, "audit", env=env_node)
    assert short.returncode == 1, short.stdout
    assert "audit clean" in short.stdout  # the ledger itself is consistent...
    assert "solvency shortfall in BTC" in short.stdout  # ...but the node cannot cover it
    skipped = vnode(fresh_db, tmp_path, "audit", "--no-node")
    assert skipped.returncode == 0 and "solvency" not in skipped.stdout


async def test_l5_bootstrap_key_only_on_empty_table(fresh_db: str, tmp_path: Path) -> None:
    """The bootstrap admin key is minted (and printed) only on a key table that never held a
    key. After the operator revoked it, a restart says how to make one and prints no key."""
    no_admin_key = {"VNODE_ADMIN_KEY": "", "VNODE_MASTER_SEED": TEST_SEED}
    first = ServeProcess(fresh_db, tmp_path / "first", extra_env=no_admin_key)
    try:
        await first.wait_ready()
    finally:
        first.stop()
    minted = _KEY.findall(first.log())
    assert len(minted) == 1, first.log()
    conn = await asyncpg.connect(fresh_db)
    try:
        key_id = await conn.fetchval("SELECT id FROM api_keys WHERE name = 'bootstrap'")
    finally:
        await conn.close()
    # Incident response: every admin key revoked.
    assert vnode(fresh_db, tmp_path, "keys", "revoke", str(key_id)).returncode == 0

    second = ServeProcess(fresh_db, tmp_path / "second", extra_env=no_admin_key)
    try:
        await second.wait_ready()
    finally:
        second.stop()
    assert _KEY.findall(second.log()) == [], "a key was printed into the service's log"
    assert "vnode keys create --scope admin" in second.log()
    conn = await asyncpg.connect(fresh_db)
    try:
        assert await conn.fetchval("SELECT count(*) FROM api_keys") == 1  # none minted
    finally:
        await conn.close()


def status_cli(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    """`vnode status` as a person runs it (VNODE_API_KEY from the environment, if any)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VNODE_")}
    environment["COLUMNS"] = "200"  # rich wraps at the terminal's width: keep a line whole
    if key is not None:
        environment["VNODE_API_KEY"] = key
    return subprocess.run(
        [VNODE, "status", *args], env=environment, capture_output=True, text=True, timeout=60
    )


async def test_status_summarises_a_running_service(fresh_db: str, tmp_path: Path) -> None:
    created = vnode(fresh_db, tmp_path, "keys", "create", "--scope", "read", "--name", "ops")
    assert created.returncode == 0, created.stderr
    read_key = created.stdout.strip()
    server = ServeProcess(fresh_db, tmp_path / "serve", extra_env={"VNODE_MASTER_SEED": TEST_SEED})
    try:
        await server.wait_ready()

        async with httpx.AsyncClient(base_url=server.url, headers=bearer(read_key)) as client:

            async def reconciled() -> bool:  # so that the table shows a last pass
                workers = (await client.get("/readyz")).json()["workers"]
                return workers["payment-reconciler"]["last_success_age_s"] is not None

            await wait_until(reconciled, 30, "the reconciler to complete a pass")

        detailed = status_cli("--url", server.url, key=read_key)
        assert detailed.returncode == 0, detailed.stdout + detailed.stderr
        text = detailed.stdout
        for expected in (
            f"vnode at {server.url}",
            "status",
            "ready",
            "database",
            "ok",
            "migrations",
            "current",
            "SIMULATED",
            "payment-reconciler",
            "s ago",
            "solvency",
            "BTC",
        ):
            assert expected in text, (expected, text)
        assert read_key not in text + detailed.stderr

        bare = status_cli("--url", server.url)
        assert bare.returncode == 0, bare.stdout + bare.stderr
        assert "ready" in bare.stdout and "A read key" in bare.stdout
        assert "current" not in bare.stdout and "SIMULATED" not in bare.stdout

        refused = status_cli("--url", server.url, "--key", "vnk_not_a_key_at_all_0000000000")
        assert refused.returncode == 2 and "refused the key" in refused.stderr, refused.stderr
    finally:
        server.stop()
    gone = status_cli("--url", server.url, "--timeout-s", "2")
    assert gone.returncode == 2 and "no answer from" in gone.stderr, gone.stderr


def test_status_exit_codes_and_a_degraded_service() -> None:
    """Exit 0 ready, 1 degraded, 2 not ready; a stale worker and a shortfall are shown."""
    degraded = Readiness(
        status="degraded",
        checks={
            "database": "ok",
            "migrations": "current",
            "node": "ready",
            "workers": "stale: payment-reconciler",
        },
        node={
            "state": "ready",
            "simulated": False,
            "backend": "rln",
            "network": "bitcoin",
            "pubkey": "02" + "ab" * 32,
            "detail": None,
        },
        workers={
            "payment-reconciler": {"last_success_age_s": 95.0, "failures": 3},
            "invoice-watcher": {"last_success_age_s": None, "failures": 0},
        },
        solvency={
            "checked_age_s": 4.2,
            "assets": [
                {"asset_id": "BTC", "owed": 5000, "node_spendable": 4000, "shortfall": 1000}
            ],
        },
    )
    assert [exit_code(Readiness(status=s)) for s in ("ready", "degraded", "not_ready", "?")] == [
        0,
        1,
        2,
        2,
    ]
    assert exit_code(degraded) == 1
    console = Console(record=True, width=200)
    render(console, "http://vnode", degraded, with_key=True)
    text = console.export_text()
    for expected in (
        "degraded",
        "stale: payment-reconciler",
        "a real node",
        "bitcoin",
        "95.0 s ago",
        "never",
        "4.2 s ago",
        "1000",
    ):
        assert expected in text, (expected, text)
    assert "SIMULATED" not in text
