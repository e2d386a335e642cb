"""/start, /help, /balance."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from vnode.bot import texts
from vnode.bot.context import BotContext, UserError
from vnode.bot.handlers.common import private_only, sender
from vnode.client import VNodeError


async def start(message: Message, ctx: BotContext) -> None:
    user = sender(message)
    node = await ctx.vnode.node(user.id)
    await message.answer(texts.welcome(node.node_id, node.pubkey, user.first_name))


async def help_(message: Message) -> None:
    await message.answer(texts.HELP)


async def balance(message: Message, ctx: BotContext) -> None:
    private_only(message)
    try:
        every = await ctx.vnode.balances(sender(message).id)
    except VNodeError as exc:
        if exc.code == "unknown_user":
            raise UserError(texts.START_FIRST) from None
        raise
    lines = [texts.balance_line(b) for b in every.balances]
    await message.answer(texts.balances(lines))


def make_router() -> Router:
    router = Router(name="wallet")
    router.message.register(start, CommandStart())
    router.message.register(help_, Command("help"))
    router.message.register(balance, Command("balance"))
    return router
