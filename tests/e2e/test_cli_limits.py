"""`vnode limits set|show USER` against a real database (docs/LIMITS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from tests.e2e.test_cli import vnode
from tests.support import new_user_id


async def test_limits_set_show_and_clear(fresh_db: str, tmp_path: Path) -> None:
    user = str(new_user_id())
    done = vnode(
        fresh_db, tmp_path, "limits", "set", f"vn_{user}", "--send-24h-msat", "5000",
        "--fee-max-msat", "0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["user_id"] == int(user)
    assert shown["overrides"]["send_24h_msat"] == 5000 and shown["overrides"]["fee_max_msat"] == 0
    assert shown["send_headroom_msat"] == 5000
    cleared = vnode(fresh_db, tmp_path, "limits", "set", user, "--clear", "send_24h_msat")
    assert cleared.returncode == 0, cleared.stderr
    read = vnode(fresh_db, tmp_path, "limits", "show", user)
    assert read.returncode == 0, read.stderr
    shown = json.loads(read.stdout)
    assert shown["overrides"]["send_24h_msat"] is None
    assert shown["overrides"]["fee_max_msat"] == 0
    conn = await asyncpg.connect(fresh_db)
    try:
        row = await conn.fetchrow("SELECT * FROM user_limits WHERE user_id = $1", int(user))
    finally:
        await conn.close()
    assert row is not None and row["fee_max_msat"] == 0 and row["send_24h_msat"] is None


def test_limits_refuses_bad_input_and_changes_nothing(fresh_db: str, tmp_path: Path) -> None:
    user = str(new_user_id())
    for args in (
        ("set", user),
        ("set", user, "--clear", "nonsense"),
        ("set", user, "--send-max-msat", "1", "--clear", "send_max_msat"),
        ("set", user, "--send-max-msat", "-1"),
        ("set", "vn_x", "--send-max-msat", "1"),
        ("show", "0"),
    ):
        result = vnode(fresh_db, tmp_path, "limits", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
    shown = json.loads(vnode(fresh_db, tmp_path, "limits", "show", user).stdout)
    assert shown["overrides"] == shown["defaults"] == dict.fromkeys(shown["overrides"])
