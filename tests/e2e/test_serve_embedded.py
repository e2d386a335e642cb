"""`vnode serve` on its own embedded PostgreSQL: bootstrap key, clean Ctrl-C and SIGTERM, data
kept. (Every stop signal and SIGKILL: test_stop_signals.py.)"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx

from tests.support import ServeProcess, bearer, new_user_id

_KEY = re.compile(r"vnk_[A-Za-z0-9_-]{20,}")


async def test_first_start_prints_admin_key_once_and_data_survives_restart(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "vnode-data"
    user = new_user_id()
    first = ServeProcess(None, data_dir, extra_env={"VNODE_ADMIN_KEY": ""})
    try:
        await first.wait_ready()
        keys = _KEY.findall(first.log())
        assert len(keys) == 1, first.log()
        async with httpx.AsyncClient(base_url=first.url, headers=bearer(keys[0])) as client:
            ready = (await client.get("/readyz")).json()
            # No node configured: the simulated node runs beside, and says so.
            assert ready["node"]["simulated"] is True and ready["node"]["state"] == "ready"
            assert "SIMULATED" in ready["warning"]
            assert "SIMULATED" in first.log()
            credited = await client.post(
                "/admin/credit",
                json={"user_id": user, "amount_msat": 4242, "reason": "restart test"},
            )
            assert credited.status_code == 200, credited.text
    finally:
        assert first.stop() == 0, first.log()[-3000:]
    # Ctrl-C stopped the embedded PostgreSQL too.
    assert not (data_dir / "pg" / "postmaster.pid").exists()
    assert (data_dir / "master_seed").stat().st_mode & 0o777 == 0o600

    second = ServeProcess(None, data_dir, extra_env={"VNODE_ADMIN_KEY": ""})
    try:
        await second.wait_ready()
        assert _KEY.findall(second.log()) == []  # the bootstrap key is shown only once
        async with httpx.AsyncClient(base_url=second.url, headers=bearer(keys[0])) as client:
            found = await client.post("/virtual_assetbalance", json={"user_id": user})
            assert found.json()["balance_msat"] == 4242
    finally:
        assert second.stop(signal.SIGTERM) == 0, second.log()[-3000:]
    # SIGTERM (systemd, Docker) stops it as cleanly as Ctrl-C.
    assert not (data_dir / "pg" / "postmaster.pid").exists()
    assert not (data_dir / "pg.runtime").exists()
