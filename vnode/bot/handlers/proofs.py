"""/proof: the user's inclusion proofs of liabilities (docs/PROOFS.md), one file per asset (BTC
and each asset the user holds), each with the line that tells how to check it."""

from __future__ import annotations

import re

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import BufferedInputFile, Message

from vnode.bot import texts
from vnode.bot.context import BotContext
from vnode.bot.handlers.common import private_only, sender, started_first
from vnode.client import BTC, VNodeError

# Not yet in an epoch (a new user, or a new asset) or no longer kept: nothing to send for it.
_NO_PROOF = ("no_proof", "proof_pruned")


async def proof(message: Message, ctx: BotContext) -> None:
    private_only(message)
    user_id = sender(message).id
    with started_first():
        held = await ctx.vnode.balances(user_id)
    assets = [BTC, *(b.asset_id for b in held.balances if b.asset_id != BTC)]
    pubkey = (await ctx.vnode.proof_key()).pubkey
    sent = 0
    for asset_id in assets:
        try:
            found = await ctx.vnode.proof(user_id, asset_id)
        except VNodeError as exc:
            if exc.code in _NO_PROOF:
                continue
            raise
        epoch = found.statement.epoch
        name = f"proof-{re.sub(r'[^A-Za-z0-9]+', '-', asset_id)[:40]}-epoch{epoch}.json"
        await message.answer_document(
            BufferedInputFile(found.model_dump_json(indent=2).encode(), name),
            caption=texts.proof_caption(asset_id, epoch, pubkey),
        )
        sent += 1
    if not sent:
        await message.answer(texts.NO_PROOF_YET)


def make_router() -> Router:
    router = Router(name="proofs")
    router.message.register(proof, Command("proof"))
    return router
