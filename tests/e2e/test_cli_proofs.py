"""`vnode proofs publish | key | verify FILE` as an operator and a user run them (PROOFS.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg

from tests.e2e.test_cli import vnode
from tests.support import new_user_id
from vnode.proofs import store, verifier


async def test_publish_key_and_verify(fresh_db: str, tmp_path: Path) -> None:
    user = str(new_user_id())
    funded = vnode(fresh_db, tmp_path, "admin", "credit", user, "--amount", "7000", "--reason", "f")
    assert funded.returncode == 0, funded.stderr
    published = vnode(fresh_db, tmp_path, "proofs", "publish")
    assert published.returncode == 0, published.stderr
    assert "BTC epoch 1: total 7000 over 1 leaves" in published.stdout
    shown = vnode(fresh_db, tmp_path, "proofs", "key")
    assert shown.returncode == 0, shown.stderr
    pubkey = shown.stdout.strip()
    assert len(pubkey) == 64

    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=1)
    try:
        proof = await store.inclusion_proof(pool, int(user), "BTC", None)
    finally:
        await pool.close()
    good = tmp_path / "proof.json"
    good.write_text(json.dumps(proof))
    verified = vnode(fresh_db, tmp_path, "proofs", "verify", str(good), "--pubkey", pubkey,
                     "--balance", "7000")  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "verified" in verified.stdout
    # Without --pubkey, the operator's own seed gives the key.
    assert vnode(fresh_db, tmp_path, "proofs", "verify", str(good)).returncode == 0

    wrong_balance = vnode(fresh_db, tmp_path, "proofs", "verify", str(good), "--pubkey", pubkey,
                          "--balance", "7001")  # fmt: skip
    assert wrong_balance.returncode == 1 and "NOT VERIFIED" in wrong_balance.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**proof, "balance": 7001}))
    refused = vnode(fresh_db, tmp_path, "proofs", "verify", str(bad), "--pubkey", pubkey)
    assert refused.returncode == 1 and "NOT VERIFIED" in refused.stdout
    # The reference verifier, copied out of the repository, run on its own.
    alone = tmp_path / "alone" / "verifier.py"
    alone.parent.mkdir()
    shutil.copy(verifier.__file__, alone)
    for path, code in [(good, 0), (bad, 1)]:
        run = subprocess.run(
            [sys.executable, "-I", str(alone), str(path), "--pubkey", pubkey],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert run.returncode == code, run.stdout + run.stderr
    (tmp_path / "junk.json").write_text("{")
    junk = vnode(fresh_db, tmp_path, "proofs", "verify", str(tmp_path / "junk.json"))
    assert junk.returncode == 2
