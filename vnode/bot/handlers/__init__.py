"""The bot's routers, in the order the dispatcher tries them. Errors of every one of them
bubble up to `errors.on_error`, registered on the dispatcher itself."""

from __future__ import annotations

from aiogram import Router

from vnode.bot.handlers import history, proofs, receive, send, wallet, wallets


def routers() -> list[Router]:
    # Commands first; the one free-text handler (an amount for an amountless invoice) last.
    return [
        wallet.make_router(),
        send.make_router(),
        receive.make_router(),
        history.make_router(),
        wallets.make_router(),
        proofs.make_router(),
        send.make_amount_router(),
    ]
