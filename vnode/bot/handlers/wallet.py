"""/start, /help, /balance."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from vnode.bot import texts
from vnode.bot.context import BotContext
from vnode.bot.handlers.common import private_only, sender, started_first


async def start(message: Message, ctx: BotContext) -> None:
    user = sender(message)
    node = await ctx.vnode.node(user.id)
    await message.answer(texts.welcome(node.node_id, node.pubkey, user.first_name))


async def help_(message: Message) -> None:
    await message.answer(texts.HELP)


async def balance(message: Message, ctx: BotContext) -> None:
    private_only(message)
    with started_first():
        every = await ctx.vnode.balances(sender(message).id)
    lines = [texts.balance_line(b) for b in every.balances]
    await message.answer(texts.balances(lines))


def make_router() -> Router:
    router = Router(name="wallet")
    router.message.register(start, CommandStart())
    router.message.register(help_, Command("help"))
    router.message.register(balance, Command("balance"))
    return router
