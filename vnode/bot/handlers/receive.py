"""/receive: an invoice as text and as a QR code."""

from __future__ import annotations

import io
from html import escape

import segno
from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, Message

from vnode.bot import texts
from vnode.bot.amounts import AmountError, format_msat, format_units, parse_msat, parse_units
from vnode.bot.context import BotContext, UserError
from vnode.bot.handlers.common import sender
from vnode.client import BTC


async def receive(message: Message, command: CommandObject, ctx: BotContext) -> None:
    user = sender(message)
    words = (command.args or "").split()
    asset_id = BTC
    if words and words[-1].lower().startswith("rgb:"):  # "btc" stays: it is the amount's unit
        asset_id = words[-1]
        words = words[:-1]
    amount_text = " ".join(words)
    expiry = ctx.settings.bot_invoice_expiry_s
    try:
        if asset_id == BTC:
            amt_msat = parse_msat(amount_text) if amount_text else None
            created = await ctx.vnode.ln_invoice(user.id, amt_msat=amt_msat, expiry_sec=expiry)
            shown = format_msat(amt_msat) if amt_msat else None
        else:
            if not amount_text:  # vnode refuses an RGB invoice without an amount (review L6)
                raise UserError("Say how many units: /receive 100 rgb:...")
            units = parse_units(amount_text)
            created = await ctx.vnode.ln_invoice(
                user.id, asset_id=asset_id, asset_amount=units, expiry_sec=expiry
            )
            shown = format_units(units, escape(texts.asset_label(asset_id)))
    except AmountError as exc:
        raise UserError(f"{exc}\nUsage: /receive 5000 (or /receive 100 rgb:...)") from None
    await message.answer(texts.invoice_text(created.invoice, shown, created.expires_at))
    await message.answer_photo(
        BufferedInputFile(qr_png(created.invoice), "invoice.png"),
        caption=f"Scan to pay{f' {shown}' if shown else ''}",
    )


def qr_png(invoice: str) -> bytes:
    """A QR code of the invoice; uppercase fits the alphanumeric mode, a denser code."""
    buffer = io.BytesIO()
    segno.make(f"lightning:{invoice}".upper(), error="m").save(
        buffer, kind="png", scale=6, border=2
    )
    return buffer.getvalue()


def make_router() -> Router:
    router = Router(name="receive")
    router.message.register(receive, Command("receive"))
    return router
