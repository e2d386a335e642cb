"""A payment to a user's Lightning Address reaches them in Telegram with the payer's comment
(LNURL-pay through the strict client lnurl 2.0.2, paid from outside through the sim)."""

from __future__ import annotations

import secrets

import asyncpg
import lnurl
from lnurl.models import LnurlPayActionResponse, LnurlPayResponse

from tests.bot.conftest import Vnode, new_user, notified, started
from vnode.bot.runtime import BotRuntime
from vnode.demo.bot_api import FakeTelegram


async def test_address_payment_is_told_with_its_comment(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode, db: asyncpg.Connection
) -> None:
    dora = new_user("Dora")
    await started(telegram, dora)
    address = await vnode.admin.claim_address(dora.id, f"dora-{secrets.token_hex(4)}")
    assert (await vnode.admin.address(dora.id)) == address
    request = await lnurl.handle(address.lnurl)
    assert isinstance(request, LnurlPayResponse)
    action = await lnurl.execute_pay_request(request, 7_000_000, comment="see you <b>soon</b>")
    assert isinstance(action, LnurlPayActionResponse)
    paid = await vnode.sim.pay(str(action.pr))
    assert paid.status_code == 200, paid.text
    told = await telegram.wait_for(dora.id, lambda m: "Received" in (m.text or ""))
    assert "7,000 sats" in (told.text or "") and "outside" in (told.text or "")
    # Escaped: the payer's text reaches the chat as text, never as markup (the one bold
    # entity is the amount's).
    assert "\nComment: see you <b>soon</b>" in (told.text or "")
    assert [e["type"] for e in told.entities] == ["bold"]
    await notified(db, dora, "invoice.paid")
