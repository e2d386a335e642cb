"""/send, /tip and /pay: build the action, ask Confirm / Cancel, and carry it out once."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable

import asyncpg
from aiogram import F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from vnode.bot import texts
from vnode.bot.amounts import AmountError, format_msat, parse_msat, take_amount
from vnode.bot.confirmations import (
    ATTEMPTED_TTL_S,
    ConfirmCallback,
    PendingAction,
    confirm_keyboard,
    retry_keyboard,
)
from vnode.bot.context import BotContext, UserError
from vnode.bot.handlers.common import callback_message, sender, started_first
from vnode.bot.recipients import (
    Recipient,
    from_telegram,
    looks_like_recipient,
    replied_author,
    resolve,
)
from vnode.client import UNEXPECTED_RESPONSE, VNodeError, VNodeUnavailable

log = logging.getLogger(__name__)

_INVOICE = re.compile(r"(?:lightning:)?(ln(?:bc|tb|bcrt|sb)[0-9a-z]+)", re.IGNORECASE)
# vnode's limit on a memo (vnode/api/schemas.py), checked before the question is asked.
MEMO_MAX_CHARS = 256


class PayFlow(StatesGroup):
    amount = State()  # an amountless invoice waits for the amount to pay


def invoice_in(word: str) -> str | None:
    match = _INVOICE.fullmatch(word.strip())
    return match[1].lower() if match else None


# --- /send, /tip -------------------------------------------------------------------------


async def send(
    message: Message, command: CommandObject, ctx: BotContext, state: FSMContext
) -> None:
    words = (command.args or "").split()
    if words and (invoice := invoice_in(words[0])) is not None:
        await _start_payment(message, invoice, ctx, state, words[1:])
        return
    try:
        amount_text, rest = take_amount(words)
        amount_msat = parse_msat(amount_text)
    except AmountError as exc:
        raise UserError(
            f"{exc}\nUsage: /send 5000 @alice [memo], or reply to a message with /send 5000."
        ) from None
    replying = message.reply_to_message is not None
    # Replying, a bare number is part of the memo: only @name or vn_id names someone else.
    explicit = rest and (
        rest[0].startswith("@")
        or (looks_like_recipient(rest[0]) and not (replying and rest[0].isdigit()))
    )
    if explicit:
        recipient = await resolve(rest[0], ctx)
        memo_words = rest[1:]
    elif (reply := replied_author(message)) is not None:
        recipient = from_telegram(reply)
        memo_words = rest
    else:
        raise UserError(
            "Who to? /send 5000 @alice [memo], or reply to their message with /send 5000."
        )
    await _ask_transfer(message, ctx, recipient, amount_msat, " ".join(memo_words) or None)


async def tip(message: Message, command: CommandObject, ctx: BotContext) -> None:
    reply = replied_author(message)
    if reply is None:
        raise UserError("Reply to someone's message with /tip 1000 to tip its author.")
    words = (command.args or "").split()
    try:
        amount_text, rest = take_amount(words)
        amount_msat = parse_msat(amount_text)
    except AmountError as exc:
        raise UserError(f"{exc}\nUsage: reply to a message with /tip 1000.") from None
    await _ask_transfer(message, ctx, from_telegram(reply), amount_msat, " ".join(rest) or None)


async def _ask_transfer(
    message: Message, ctx: BotContext, recipient: Recipient, amount_msat: int, memo: str | None
) -> None:
    user = sender(message)
    if recipient.user_id == user.id:
        raise UserError("You can't send to yourself.")
    if memo is not None and len(memo) > MEMO_MAX_CHARS:
        raise UserError(f"The memo is too long: at most {MEMO_MAX_CHARS} characters.")
    await _check_funds(ctx, user.id, amount_msat)
    action = PendingAction(
        token=ctx.pending.new_token(),
        kind="transfer",
        user_id=user.id,
        chat_id=message.chat.id,
        amount_msat=amount_msat,
        to_user_id=recipient.user_id,
        to_label=recipient.label,
        create_recipient=recipient.create,
        memo=memo,
    )
    await ctx.pending.put(action)
    to = texts.recipient(recipient.first_name, recipient.username, recipient.node_id)
    await message.reply(
        texts.confirm_transfer(amount_msat, to, memo), reply_markup=confirm_keyboard(action.token)
    )


async def _check_funds(ctx: BotContext, user_id: int, needed_msat: int) -> None:
    """Refuse early what vnode would refuse anyway (it stays the judge at Confirm)."""
    with started_first():
        balance = await ctx.vnode.asset_balance(user_id)
    spendable = balance.spendable_msat or 0
    if spendable < needed_msat:
        raise UserError(
            f"Not enough balance: that needs {format_msat(needed_msat)}, "
            f"you can spend {format_msat(spendable)}."
        )


# --- /pay --------------------------------------------------------------------------------


async def pay(message: Message, command: CommandObject, ctx: BotContext, state: FSMContext) -> None:
    words = (command.args or "").split()
    invoice = invoice_in(words[0]) if words else None
    if invoice is None:
        raise UserError("Usage: /pay lnbc... (a Lightning invoice)")
    await _start_payment(message, invoice, ctx, state, words[1:])


async def _start_payment(
    message: Message, invoice: str, ctx: BotContext, state: FSMContext, rest: list[str]
) -> None:
    amt_msat = None
    if rest:
        try:
            amt_msat = parse_msat(" ".join(rest))
        except AmountError as exc:
            raise UserError(str(exc)) from None
    quote = await ctx.vnode.decode_invoice(invoice, amt_msat=amt_msat)
    if quote.amount_msat is None:
        await state.set_state(PayFlow.amount)
        await state.update_data(invoice=invoice)
        await message.reply(
            "This invoice has no amount. How much do you want to pay? "
            "(like 5000, 5k or 0.0001 btc; /cancel to stop)"
        )
        return
    await _ask_payment(
        message, ctx, invoice, amt_msat if quote.invoice_amount_msat is None else None
    )


async def cancel_amount(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.reply(texts.CANCELLED)


async def amount_given(message: Message, ctx: BotContext, state: FSMContext) -> None:
    data = await state.get_data()
    try:
        amt_msat = parse_msat(message.text or "")
    except AmountError as exc:
        raise UserError(f"{exc} How much do you want to pay? (/cancel to stop)") from None
    await state.clear()
    await _ask_payment(message, ctx, str(data["invoice"]), amt_msat)


async def _ask_payment(
    message: Message, ctx: BotContext, invoice: str, amt_msat: int | None
) -> None:
    user = sender(message)
    quote = await ctx.vnode.decode_invoice(invoice, amt_msat=amt_msat)
    if quote.amount_msat is None:
        raise UserError("This invoice has no amount: /pay it again and give one.")
    await _check_funds(ctx, user.id, quote.total_msat or quote.amount_msat)
    action = PendingAction(
        token=ctx.pending.new_token(),
        kind="payment",
        user_id=user.id,
        chat_id=message.chat.id,
        amount_msat=quote.amount_msat,
        invoice=invoice,
        amt_msat=amt_msat,
        payment_hash=quote.payment_hash,
    )
    await ctx.pending.put(action)
    await message.reply(texts.confirm_payment(quote), reply_markup=confirm_keyboard(action.token))


# --- the buttons -------------------------------------------------------------------------


async def pressed(query: CallbackQuery, callback_data: ConfirmCallback, ctx: BotContext) -> None:
    message = callback_message(query)
    # Owner and "can it still be cancelled" are judged on the action as it is taken, in one
    # step: a look beforehand would be stale by the time of the take (L10 of the review).
    taken = await ctx.pending.take(
        callback_data.token,
        query.from_user.id,
        "cancelled" if callback_data.op == "no" else "confirmed",
    )
    if taken == "not_yours":
        await _answer(query, texts.NOT_YOURS, alert=True)
        return
    if taken == "cannot_cancel":
        # It may have gone through: cancelling now would tell the user a guess.
        await _answer(query, texts.CANNOT_CANCEL, alert=True)
        return
    if taken is None:
        await _late_tap(query, message, ctx, callback_data.token)
        return
    action = taken
    if callback_data.op == "no":
        await _answer(query, texts.CANCELLED)
        await _show_result(query, message, texts.CANCELLED, action)
        return
    await _answer(query, "Sending…")
    if message is not None:
        try:
            await message.edit_text("Sending…")  # the buttons go: nothing left to tap twice
        except TelegramAPIError as exc:  # cosmetic; the action is taken and goes ahead
            log.warning("could not edit a confirmation: %s", exc)
    if action.kind == "transfer":
        text = await _carry_out_transfer(action, ctx)
    else:
        text = await _carry_out_payment(action, ctx, message)
    await _show_result(query, message, text, action)


async def _late_tap(
    query: CallbackQuery, message: Message | None, ctx: BotContext, token: str
) -> None:
    """A tap on an action already taken (several taps arrive together) or expired."""
    earlier = await ctx.pending.outcome(token)
    await _answer(
        query,
        texts.EXPIRED
        if earlier is None
        else texts.CANCELLED
        if earlier == "cancelled"
        else texts.ALREADY,
    )
    if message is not None and earlier is None and message.reply_markup is not None:
        with contextlib.suppress(TelegramAPIError):
            await message.edit_reply_markup(reply_markup=None)


async def _answer(query: CallbackQuery, text: str, *, alert: bool = False) -> None:
    """Answer a tap; Telegram refuses answers after ~15 s, and that must not stop the work."""
    try:
        await query.answer(text, show_alert=alert)
    except TelegramAPIError as exc:
        log.info("could not answer a button press: %s", exc)


async def _show_result(
    query: CallbackQuery, message: Message | None, text: str, action: PendingAction
) -> None:
    """Money may have moved by now: if the confirmation cannot be edited, say it anew."""
    retry = retry_keyboard(action.token) if text == texts.UNREACHABLE_AMBIGUOUS else None
    if message is not None:
        try:
            await message.edit_text(text, reply_markup=retry)
            return
        except TelegramAPIError as exc:
            log.warning("could not edit a confirmation: %s", exc)
    if query.bot is not None:
        await query.bot.send_message(action.chat_id, text, reply_markup=retry)


async def _carry_out_transfer(action: PendingAction, ctx: BotContext) -> str:
    to_user_id, memo = action.recipient(), action.memo

    async def transfer() -> str:
        if action.create_recipient:
            await ctx.vnode.node(to_user_id)
        done = await ctx.vnode.transfer(
            action.user_id,
            to_user_id,
            amount_msat=action.amount_msat,
            memo=memo,
            idempotency_key=action.idempotency_key,
        )
        return texts.transfer_done(
            action.amount_msat, action.to_label or "", done.sender_balance.balance_msat
        )

    return await _money_call(action, ctx, transfer)


async def _carry_out_payment(
    action: PendingAction, ctx: BotContext, message: Message | None
) -> str:
    invoice, payment_hash = action.payable()
    if message is not None:
        await ctx.profiles.remember_payment_message(
            payment_hash, action.user_id, message.chat.id, message.message_id
        )

    async def send_payment() -> str:
        # While in flight, the payment's final event waits for this answer (payment_calls.py).
        async with ctx.payment_calls.in_flight(payment_hash, action.user_id):
            paid = await ctx.vnode.send_payment(
                action.user_id,
                invoice,
                amt_msat=action.amt_msat,
                idempotency_key=action.idempotency_key,
            )
            if paid.status != "pending":
                # This answer tells the end: the payment's final event will not tell it again.
                try:
                    await ctx.profiles.claim_final(payment_hash, action.user_id)
                except (OSError, asyncpg.PostgresError) as exc:  # then the event tells it too
                    log.warning("could not record a payment's end as told: %s", exc)
        return texts.payment_result(
            paid.status, paid.amount_msat, paid.fee_msat, paid.failure_reason
        )

    return await _money_call(action, ctx, send_payment)


async def _money_call(
    action: PendingAction, ctx: BotContext, call: Callable[[], Awaitable[str]]
) -> str:
    """Run a money call. vnode.client resends it by itself, with the same Idempotency-Key,
    while its outcome is unknown (no answer, a 5xx such as `database_unavailable` during a
    failover: its RetryPolicy); if it stays unknown, the action is put back so that "Try
    again" can be pressed (it can only ever be carried out once)."""
    try:
        return await call()
    except VNodeError as exc:
        if is_refusal(exc):
            return texts.refusal(exc)
        log.warning(
            "money call outcome unknown: %s",
            exc.code,
            extra={"status": exc.status, "request_id": exc.request_id},
        )
    await ctx.pending.put(action.model_copy(update={"attempted": True}), ttl_s=ATTEMPTED_TTL_S)
    return texts.UNREACHABLE_AMBIGUOUS


def is_refusal(error: VNodeError) -> bool:
    """A refusal says for sure that nothing moved: a 4xx with a code of vnode's catalogue,
    or the node being unavailable (503, "no money moved"). Anything else is unknown."""
    if isinstance(error, VNodeUnavailable) or error.code == UNEXPECTED_RESPONSE:
        return False
    return error.status < 500 or error.code == "node_unavailable"


def make_router() -> Router:
    router = Router(name="send")
    router.message.register(send, Command("send"))
    router.message.register(tip, Command("tip"))
    router.message.register(pay, Command("pay"))
    router.callback_query.register(pressed, ConfirmCallback.filter())
    return router


def make_amount_router() -> Router:
    """The answer to "how much?" is free text, so it is tried after every command."""
    router = Router(name="amount")
    router.message.register(cancel_amount, PayFlow.amount, Command("cancel"))
    router.message.register(amount_given, PayFlow.amount, F.text, ~F.text.startswith("/"))
    return router
