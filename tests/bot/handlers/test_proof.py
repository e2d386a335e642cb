"""/proof: the user gets a proof file per asset held, each verifying with the operator's key by a
verifier written from issue 16's text alone (tests/proofs_verifier.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

import asyncpg

from tests import proofs_verifier
from tests.bot.conftest import Vnode, funded, new_user, started
from tests.integration.proofs.support import publish_now
from tests.support import RGB_ASSET
from vnode.bot.runtime import BotRuntime
from vnode.demo.bot_api import FakeTelegram, SentMessage
from vnode.keys import SoftwareSigner, load_or_create_seed
from vnode.settings import Settings


async def _publish(vnode: Vnode) -> None:
    """An epoch now, signed with the running service's own seed (its data directory's)."""
    seed = load_or_create_seed(Settings(data_dir=vnode.serve.data_dir).seed_path, None)
    pool = await asyncpg.create_pool(vnode.database_url, min_size=1, max_size=2)
    try:
        await publish_now(pool, SoftwareSigner(seed))
    finally:
        await pool.close()


def _document_about(fragment: str) -> Callable[[SentMessage], bool]:
    return lambda m: m.document is not None and fragment in (m.caption or "")


async def test_proof_sends_a_verifiable_file_per_asset(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    dora = new_user("Dora")
    await started(telegram, dora)
    telegram.user_says(dora, "/proof")
    before = await telegram.wait_for(dora.id, lambda m: "No proof" in (m.text or ""))
    assert "every hour" in (before.text or "")

    await funded(vnode, dora, 4_321, telegram)
    await vnode.admin.admin_credit(dora.id, asset_id=RGB_ASSET, asset_amount=77, reason="rgb")
    await _publish(vnode)
    pubkey = (await vnode.admin.proof_key()).pubkey
    telegram.user_says(dora, "/proof")
    files = [await telegram.wait_for(dora.id, _document_about(n)) for n in ("BTC", RGB_ASSET[:12])]
    balances = []
    for sent in files:
        assert sent.document is not None and (sent.document_name or "").endswith(".json")
        assert pubkey in (sent.caption or "") and "verifier.py" in (sent.caption or "")
        proof = json.loads(sent.document)
        assert proofs_verifier.check(proof, pubkey)
        balances.append((proof["statement"]["asset_id"], proof["balance"]))
    assert balances == [("BTC", 4_321_000), (RGB_ASSET, 77)]
