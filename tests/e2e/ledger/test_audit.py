"""`vnode audit` as a command: exit code 0 and "audit clean" on an honest ledger, 1 and the
difference when a cached balance is tampered with. (The audit itself, in-process:
tests/integration/ledger/test_audit.py.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.integration.ledger.test_audit import BOB, fill
from tests.support import VNODE


@pytest.fixture
async def busy(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=4)
    assert pool is not None
    yield await fill(pool)
    await pool.close()


async def run_cli(dsn: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VNODE_")}
    env.update({"VNODE_DATABASE_URL": dsn, "COLUMNS": "200", "NO_COLOR": "1"})
    return await asyncio.to_thread(
        subprocess.run,
        [VNODE, "audit"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_audit_cli_exit_codes(busy: asyncpg.Pool, fresh_db: str, tmp_path: Path) -> None:
    clean = await run_cli(fresh_db, tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "audit clean" in clean.stdout
    assert "difference" not in clean.stdout.replace("differences ", "")

    await busy.execute(
        f"UPDATE ln_user_balances SET spendable = spendable + 1 WHERE user_id = {BOB}"
    )
    dirty = await run_cli(fresh_db, tmp_path)
    assert dirty.returncode == 1, dirty.stdout + dirty.stderr
    assert "audit clean" not in dirty.stdout
    assert "difference" in dirty.stdout
    assert f"account {BOB} BTC: expected 500, found 501" in dirty.stdout
