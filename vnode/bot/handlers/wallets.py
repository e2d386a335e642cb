"""/wallet (LndHub credentials for BlueWallet, Zeus, Alby) and /address (a Lightning Address).

vnode's `POST /virtual_lndhub_account` always makes new credentials (creating or rotating:
the old ones stop working at once), and the bot cannot tell whether a user already has some.
So nothing is issued by a command alone: /wallet explains and asks, and only a tap on its
"Create credentials" button (one-shot, kept in Redis with the confirmations' expiry) issues
them. The credentials' Rotate button asks again before it replaces them.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Literal

import segno
from aiogram import Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

from vnode.bot import texts
from vnode.bot.context import BotContext, UserError
from vnode.bot.handlers.common import callback_message, sender
from vnode.client import LightningAddress, VNodeError

log = logging.getLogger(__name__)

Scope = Literal["spend", "invoice"]
_OFFER = "bitmask:wallet-offer:"
# Take the offer only if it is the presser's (value "user_id:scope"): one tap issues.
_TAKE_IF_OWNER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""


class WalletCallback(CallbackData, prefix="wl"):
    op: Literal["new", "no", "rotate"]
    scope: Scope
    offer: str = "-"  # the one-shot offer's id; the Rotate button has none
    replaces: int = 0  # a rotation's: the message showing the credentials it replaces


# --- /wallet -----------------------------------------------------------------------------


async def wallet(message: Message, command: CommandObject, ctx: BotContext) -> None:
    if message.chat.type != "private":
        # Not even the offer: its answer would be credentials, and they are never for a group.
        raise UserError(texts.WALLET_PRIVATE_ONLY)
    user = sender(message)
    arg = (command.args or "").strip().lower()
    if arg not in ("", "invoice"):
        raise UserError(texts.WALLET_USAGE)
    scope: Scope = "invoice" if arg == "invoice" else "spend"
    await _offer(message, ctx, user.id, scope, texts.wallet_offer(scope))


async def _offer(
    message: Message, ctx: BotContext, user_id: int, scope: Scope, text: str, replaces: int = 0
) -> None:
    token = ctx.pending.new_token()
    await ctx.redis.set(_OFFER + token, f"{user_id}:{scope}", ex=ctx.settings.bot_confirm_ttl_s)
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text="Create credentials",
                    callback_data=WalletCallback(
                        op="new", scope=scope, offer=token, replaces=replaces
                    ).pack(),
                ),
                InlineKeyboardButton(
                    text="Cancel",
                    callback_data=WalletCallback(op="no", scope=scope, offer=token).pack(),
                ),
            ]
        ]
    )
    await message.answer(text, reply_markup=keyboard)


async def pressed(query: CallbackQuery, callback_data: WalletCallback, ctx: BotContext) -> None:
    message = callback_message(query)
    user_id = query.from_user.id
    # Credentials go only to the presser's own private chat (where the button was sent).
    if message is None or message.chat.type != "private" or message.chat.id != user_id:
        await _answer(query, texts.WALLET_PRIVATE_ONLY, alert=True)
        return
    scope = callback_data.scope
    if callback_data.op == "rotate":
        await _answer(query)
        await _offer(
            message, ctx, user_id, scope, texts.wallet_rotate_offer(scope), message.message_id
        )
        return
    take = ctx.redis.register_script(_TAKE_IF_OWNER)
    taken = await take(keys=[_OFFER + callback_data.offer], args=[f"{user_id}:{scope}"])
    if not taken:  # expired, cancelled, or a second tap after the first issued
        await _answer(query, texts.WALLET_OFFER_GONE, alert=True)
        if message.reply_markup is not None:
            with contextlib.suppress(TelegramAPIError):  # already gone: nothing to remove
                await message.edit_reply_markup(reply_markup=None)
        return
    if callback_data.op == "no":
        await _answer(query, texts.WALLET_KEPT)
        await _edit(message, texts.WALLET_KEPT)
        return
    await _answer(query, "Creating…")
    account = await ctx.vnode.lndhub_account(user_id, scope)
    await _edit(message, texts.WALLET_ISSUED)
    rotate = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text="Rotate",
                    callback_data=WalletCallback(op="rotate", scope=scope).pack(),
                )
            ]
        ]
    )
    if callback_data.replaces:
        await _retire(message, callback_data.replaces)
    await message.answer_photo(
        BufferedInputFile(qr_png(account.url), "wallet.png"),
        caption=texts.wallet_credentials(account.url, scope),
        reply_markup=rotate,
    )


async def _answer(query: CallbackQuery, text: str | None = None, *, alert: bool = False) -> None:
    """Answer a tap; Telegram refuses answers after ~15 s, and that must not stop the work
    (the offer is already taken: failing now would leave the user with nothing)."""
    try:
        await query.answer(text, show_alert=alert)
    except TelegramAPIError as exc:
        log.info("could not answer a button press: %s", exc)


async def _retire(message: Message, replaced_id: int) -> None:
    """Take dead credentials out of the chat: delete their message, or (Telegram lets a bot
    delete only for 48 hours) at least their text and Rotate button."""
    if message.bot is None:
        return
    chat_id = message.chat.id
    try:
        await message.bot.delete_message(chat_id, replaced_id)
    except TelegramAPIError:
        try:
            await message.bot.edit_message_caption(
                chat_id=chat_id, message_id=replaced_id, caption=texts.WALLET_REPLACED
            )
        except TelegramAPIError as exc:  # cosmetic: they no longer work either way
            log.info("could not retire replaced wallet credentials: %s", exc)


async def _edit(message: Message, text: str) -> None:
    """Replace the question (its buttons go with it: nothing left to tap twice)."""
    try:
        await message.edit_text(text)
    except TelegramAPIError as exc:  # cosmetic: what was asked is done or refused already
        log.warning("could not edit a wallet offer: %s", exc)


# --- /address ----------------------------------------------------------------------------


async def address(message: Message, command: CommandObject, ctx: BotContext) -> None:
    user = sender(message)
    words = (command.args or "").split()
    if len(words) > 1:
        raise UserError(texts.ADDRESS_USAGE)
    try:
        current = await _current_address(ctx, user.id)
        if not words:
            if current is None:
                await message.answer(texts.NO_ADDRESS_YET)
                return
            found = current
        else:
            found = await ctx.vnode.claim_address(user.id, words[0])
    except VNodeError as exc:
        if exc.code == "unknown_user":
            raise UserError(texts.START_FIRST) from None
        if exc.code == "not_configured":  # vnode has no public URL to make addresses with
            raise UserError(texts.ADDRESS_OFF) from None
        raise
    # A changed name: the old one still pays the user during vnode's hold, then is free.
    released = current.address if current and words and current.name != found.name else None
    await message.answer_photo(
        BufferedInputFile(qr_png(f"lightning:{found.lnurl}".upper()), "address.png"),
        caption=texts.address_card(found.address, found.lnurl, claimed=bool(words), old=released),
    )


async def _current_address(ctx: BotContext, user_id: int) -> LightningAddress | None:
    try:
        return await ctx.vnode.address(user_id)
    except VNodeError as exc:
        if exc.code == "no_address":
            return None
        raise


def qr_png(data: str) -> bytes:
    buffer = io.BytesIO()
    segno.make(data, error="m").save(buffer, kind="png", scale=6, border=2)
    return buffer.getvalue()


def make_router() -> Router:
    router = Router(name="wallets")
    router.message.register(wallet, Command("wallet"))
    router.message.register(address, Command("address"))
    router.callback_query.register(pressed, WalletCallback.filter())
    return router
