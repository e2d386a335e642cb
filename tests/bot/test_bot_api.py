"""The Telegram Bot API stand-in, proven with the real aiogram client over real HTTP."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import aiohttp
import pytest
import segno
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.filters import CommandStart
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllPrivateChats,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

from vnode.demo.bot_api import (
    BotApiError,
    FakeTelegram,
    SentMessage,
    TgUser,
    parse_html,
    parse_markdown_v2,
)

TOKEN = "7000000001:" + "S" * 35
ALICE = TgUser(id=501, first_name="Alice", username="alice")
BOB = TgUser(id=502, first_name="Bob", username="bob_wallet")
GROUP = -100_777


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    telegram = FakeTelegram(TOKEN)
    await telegram.start()
    yield telegram
    await telegram.stop()


def make_bot(base_url: str, token: str = TOKEN) -> Bot:
    return Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)))


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    client = make_bot(fake.base_url)
    yield client
    await client.session.close()


def keyboard(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    buttons = [InlineKeyboardButton(text=text, callback_data=data) for text, data in pairs]
    return InlineKeyboardMarkup(inline_keyboard=[buttons])


def qr_png(payload: str) -> bytes:
    buffer = io.BytesIO()
    segno.make(payload).save(buffer, kind="png", scale=4)
    return buffer.getvalue()


async def kept_message(fake: FakeTelegram, bot: Bot, user: TgUser) -> SentMessage:
    """A bot message with two buttons in the user's private chat."""
    fake.user_says(user, "/start")
    await bot.send_message(user.id, "Pick one", reply_markup=keyboard(("A", "a"), ("B", "b")))
    return await fake.wait_for(user.id)


# --------------------------------------------------------------------------- basics


async def test_get_me_describes_the_bot(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()

    assert (me.id, me.is_bot, me.username) == (7000000001, True, "bitMaskRGB_bot")
    assert me.can_read_all_group_messages is False
    assert fake.calls("getMe")[0]["ok"] is True


async def test_wrong_token_is_unauthorized(fake: FakeTelegram) -> None:
    intruder = make_bot(fake.base_url, token="7000000001:" + "X" * 35)
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await intruder.get_me()
    finally:
        await intruder.session.close()


async def test_unknown_method_is_not_found_and_json_bodies_work(fake: FakeTelegram) -> None:
    fake.user_says(ALICE, "hi")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.base_url}/bot{TOKEN}/sendTelepathy") as resp:
            assert resp.status == 404
            assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        body = {"chat_id": ALICE.id, "text": "plain JSON", "reply_markup": {"inline_keyboard": []}}
        async with http.post(f"{fake.base_url}/bot{TOKEN}/sendmessage", json=body) as resp:
            reply = await resp.json()
    assert reply["ok"] is True
    assert reply["result"]["text"] == "plain JSON"
    assert fake.calls("sendMessage")[0]["params"]["chat_id"] == ALICE.id


# --------------------------------------------------------------------------- sending


async def test_send_message_parses_html_and_keeps_the_keyboard(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.user_says(ALICE, "/start")
    sent = await bot.send_message(
        ALICE.id,
        "<b>Balance</b>: 1&amp;2 <a href='https://example.com'>sats</a>\n",
        parse_mode="HTML",
        reply_markup=keyboard(("Send", "send"), ("Receive", "recv")),
    )

    assert sent.text == "Balance: 1&2 sats"
    assert sent.from_user is not None and sent.from_user.id == 7000000001
    assert [(e.type, e.offset, e.length) for e in sent.entities or []] == [
        ("bold", 0, 7),
        ("text_link", 13, 4),
    ]
    assert sent.reply_markup is not None
    expected = keyboard(("Send", "send"), ("Receive", "recv"))
    assert sent.reply_markup.model_dump() == expected.model_dump()
    stored = await fake.wait_for(ALICE.id)
    assert stored.buttons() == [("Send", "send"), ("Receive", "recv")]
    assert stored.raw_text is not None and stored.raw_text.startswith("<b>Balance</b>")
    assert (stored.method, stored.parse_mode, stored.message_id) == ("sendMessage", "HTML", 2)


async def test_reply_to_a_user_message(fake: FakeTelegram, bot: Bot) -> None:
    asked = fake.user_says(ALICE, "/balance")
    sent = await bot.send_message(ALICE.id, "0 sats", reply_to_message_id=asked.message_id)

    assert sent.reply_to_message is not None
    assert sent.reply_to_message.text == "/balance"
    assert fake.messages(ALICE.id)[0].reply_to_message_id == asked.message_id
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(ALICE.id, "x", reply_to_message_id=999)


@pytest.mark.parametrize(
    ("text", "parse_mode", "error"),
    [
        ("x" * 4097, None, "message is too long"),
        ("", None, "message text is empty"),
        ("  \n ", None, "message text is empty"),
        ("<b>open", "HTML", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", "HTML", "Unmatched end tag at byte offset 4"),
        ("1 < 2", "HTML", 'Unsupported start tag "" at byte offset 2'),
        ("line<br/>break", "HTML", 'Unsupported start tag "br/"'),
        ("<span>x</span>", "HTML", 'Tag "span" must have class "tg-spoiler"'),
        ("Total: 5.00", "MarkdownV2", "Character '.' is reserved"),
        ("*bold", "MarkdownV2", "Can't find end of Bold entity at byte offset 0"),
        ("x", "Shouty", "unsupported parse_mode"),
    ],
)
async def test_send_message_rejects_what_telegram_rejects(
    fake: FakeTelegram, bot: Bot, text: str, parse_mode: str | None, error: str
) -> None:
    fake.user_says(ALICE, "/start")
    with pytest.raises(TelegramBadRequest) as raised:
        await bot.send_message(ALICE.id, text, parse_mode=parse_mode)

    assert error in raised.value.message
    assert fake.messages(ALICE.id) == []
    assert fake.calls("sendMessage")[-1]["ok"] is False


async def test_callback_data_over_64_bytes_is_invalid(fake: FakeTelegram, bot: Bot) -> None:
    fake.user_says(ALICE, "/start")
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(ALICE.id, "x", reply_markup=keyboard(("too long", "d" * 65)))
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(ALICE.id, "x", reply_markup=keyboard(("multi-byte", "é" * 33)))


async def test_chats_must_exist_and_users_can_block(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(12345, "hello?")
    fake.user_says(BOB, "/tip", chat_id=GROUP, chat_type="group")
    with pytest.raises(TelegramForbiddenError, match="can't initiate conversation"):
        await bot.send_message(BOB.id, "psst")

    fake.user_says(BOB, "/start")
    fake.block(BOB)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(BOB.id, "still there?")
    fake.user_says(BOB, "/start")
    assert (await bot.send_message(BOB.id, "welcome back")).text == "welcome back"


async def test_send_photo_uploads_the_bytes(fake: FakeTelegram, bot: Bot) -> None:
    fake.user_says(ALICE, "/receive")
    png = qr_png("lnbcrt50u1ptest")
    sent = await bot.send_photo(
        ALICE.id, BufferedInputFile(png, "invoice.png"), caption="<i>Scan</i> me", parse_mode="HTML"
    )

    assert sent.caption == "Scan me"
    assert sent.photo is not None and sent.photo[-1].file_size == len(png)
    stored = await fake.wait_for(ALICE.id, lambda m: m.photo is not None)
    assert stored.photo == png
    assert (stored.text, stored.caption, stored.method) == (None, "Scan me", "sendPhoto")

    again = await bot.send_photo(ALICE.id, sent.photo[-1].file_id)
    assert (await fake.wait_for(ALICE.id)).photo == png
    assert again.photo is not None and again.caption is None


async def test_send_photo_rejections(fake: FakeTelegram, bot: Bot) -> None:
    fake.user_says(ALICE, "/receive")
    png = BufferedInputFile(qr_png("x"), "qr.png")
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await bot.send_photo(ALICE.id, png, caption="c" * 1025)
    with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
        await bot.send_photo(ALICE.id, BufferedInputFile(b"not an image", "x.png"))
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_photo(ALICE.id, "AgACnever-issued")


# --------------------------------------------------------------------------- editing


async def test_edit_message_text_records_an_event(fake: FakeTelegram, bot: Bot) -> None:
    fake.user_says(ALICE, "/pay")
    sent = await bot.send_message(ALICE.id, "Paying…", reply_markup=keyboard(("Cancel", "c")))
    edited = await bot.edit_message_text(
        "<b>Paid</b>", chat_id=ALICE.id, message_id=sent.message_id, parse_mode="HTML"
    )

    assert isinstance(edited, Message) and edited.text == "Paid"
    assert edited.edit_date is not None
    # Each event is a snapshot: the send is still seen as it was, then the edit.
    first = await fake.wait_for(ALICE.id)
    assert (first.text, first.buttons()) == ("Paying…", [("Cancel", "c")])
    second = await fake.wait_for(ALICE.id, lambda m: m.text == "Paid")
    assert (second.method, second.edits, second.buttons()) == ("editMessageText", ["Paying…"], [])
    assert fake.messages(ALICE.id)[0].text == "Paid"  # current state


async def test_edit_errors_match_telegram(fake: FakeTelegram, bot: Bot) -> None:
    said = fake.user_says(ALICE, "/pay")
    sent = await bot.send_message(ALICE.id, "Paid", reply_markup=keyboard(("OK", "ok")))

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "Paid",
            chat_id=ALICE.id,
            message_id=sent.message_id,
            reply_markup=keyboard(("OK", "ok")),
        )
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=ALICE.id, message_id=404)
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text("x", chat_id=ALICE.id, message_id=said.message_id)
    await bot.edit_message_reply_markup(chat_id=ALICE.id, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(chat_id=ALICE.id, message_id=sent.message_id)

    assert await bot.delete_message(ALICE.id, sent.message_id) is True
    assert fake.messages(ALICE.id) == []
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(ALICE.id, sent.message_id)


# --------------------------------------------------------------------------- updates


async def test_get_updates_confirms_by_offset(fake: FakeTelegram, bot: Bot) -> None:
    fake.user_says(ALICE, "/start")
    fake.user_says(ALICE, "hello @bob_wallet")

    first = await bot.get_updates()
    assert [u.message.text for u in first if u.message] == ["/start", "hello @bob_wallet"]
    command, mention = (u.message for u in first if u.message)
    assert [e.type for e in command.entities or []] == ["bot_command"]
    assert [(e.type, e.offset, e.length) for e in mention.entities or []] == [("mention", 6, 11)]
    assert len(await bot.get_updates()) == 2  # unconfirmed updates come back

    rest = await bot.get_updates(offset=first[0].update_id + 1)
    assert [u.update_id for u in rest] == [first[1].update_id]
    assert await bot.get_updates(offset=first[1].update_id + 1) == []


async def test_long_poll_returns_as_soon_as_an_update_arrives(fake: FakeTelegram, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await fake.wait_idle(timeout_s=5)
    fake.user_says(ALICE, "/start")

    updates = await asyncio.wait_for(poll, timeout=5)
    assert [u.message.text for u in updates if u.message] == ["/start"]


async def test_a_second_poller_terminates_the_first(fake: FakeTelegram, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=30))
    await fake.wait_idle(timeout_s=5)
    second = asyncio.create_task(bot.get_updates(timeout=30))

    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await asyncio.wait_for(first, timeout=5)
    fake.user_says(ALICE, "/start")
    assert len(await asyncio.wait_for(second, timeout=5)) == 1


async def test_group_privacy_mode_delivers_commands_and_replies_only(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.user_says(ALICE, "just chatting", chat_id=GROUP, chat_type="group")
    fake.user_says(ALICE, "/pay@other_bot 5", chat_id=GROUP, chat_type="group")
    tip = fake.user_says(ALICE, "/tip@bitMaskRGB_bot 5", chat_id=GROUP, chat_type="group")
    await bot.send_message(GROUP, "Tipped!", reply_to_message_id=tip.message_id)
    tipped = await fake.wait_for(GROUP)
    fake.user_says(BOB, "thanks", chat_id=GROUP, chat_type="group", reply_to=tipped)

    updates = await bot.get_updates()
    texts = [u.message.text for u in updates if u.message]
    assert texts == ["/tip@bitMaskRGB_bot 5", "thanks"]
    reply = updates[1].message
    assert reply is not None and reply.chat.type == "group"
    assert reply.reply_to_message is not None and reply.reply_to_message.text == "Tipped!"


# --------------------------------------------------------------------------- callbacks


async def test_press_and_answer_callback_query(fake: FakeTelegram, bot: Bot) -> None:
    shown = await kept_message(fake, bot, ALICE)
    query_id = fake.press(ALICE, shown, "b")

    updates = await bot.get_updates()
    query = updates[-1].callback_query
    assert query is not None and (query.id, query.data) == (query_id, "b")
    assert isinstance(query.message, Message) and query.message.text == "Pick one"
    assert await bot.answer_callback_query(query_id, text="Chose B", show_alert=True) is True
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query_id, text="again")

    assert fake.callback_answers()[0]["text"] == "Chose B"
    assert fake.callback_answers()[0]["show_alert"] is True
    assert (await fake.wait_for_answer(query_id))["callback_query_id"] == query_id


async def test_press_refuses_what_a_user_cannot_do(fake: FakeTelegram, bot: Bot) -> None:
    shown = await kept_message(fake, bot, ALICE)
    with pytest.raises(AssertionError, match="no button with callback_data 'z'"):
        fake.press(ALICE, shown, "z")
    with pytest.raises(AssertionError, match="cannot see private chat"):
        fake.press(BOB, shown, "a")


# --------------------------------------------------------------------------- failures


async def test_injected_flood_control_raises_retry_after(fake: FakeTelegram, bot: Bot) -> None:
    fake.user_says(ALICE, "/start")
    fake.fail_next("sendMessage", retry_after=3)
    with pytest.raises(TelegramRetryAfter) as raised:
        await bot.send_message(ALICE.id, "one")
    assert raised.value.retry_after == 3

    fake.fail_next("sendMessage", error_code=403, description="Forbidden: user is deactivated")
    with pytest.raises(TelegramForbiddenError, match="user is deactivated"):
        await bot.send_message(ALICE.id, "two")
    assert (await bot.send_message(ALICE.id, "three")).text == "three"
    assert [m.text for m in fake.messages(ALICE.id)] == ["three"]
    assert [c["ok"] for c in fake.calls("sendMessage")] == [False, False, True]


async def test_wait_for_times_out_with_a_report(fake: FakeTelegram, bot: Bot) -> None:
    fake.user_says(ALICE, "/start")
    await bot.send_message(ALICE.id, "Hello")
    with pytest.raises(TelegramBadRequest):
        await bot.send_message(ALICE.id, "<b>broken", parse_mode="HTML")

    with pytest.raises(AssertionError) as raised:
        await fake.wait_for(ALICE.id, lambda m: "Goodbye" in m.text, timeout_s=0.2)  # type: ignore[operator]
    report = str(raised.value)
    assert "'Hello'" in report
    assert "can't parse entities" in report


async def test_commands_round_trip(fake: FakeTelegram, bot: Bot) -> None:
    commands = [BotCommand(command="start", description="Open your wallet")]
    scope = BotCommandScopeAllPrivateChats()
    assert await bot.set_my_commands(commands, scope=scope) is True
    listed = await bot.get_my_commands(scope=scope)
    assert [c.model_dump() for c in listed] == [c.model_dump() for c in commands]
    assert await bot.get_my_commands() == []
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Start", description="x")])
    assert await bot.delete_my_commands(scope=scope) is True
    assert await bot.get_my_commands(scope=scope) == []


# --------------------------------------------------------------------------- a real dispatcher


def echo_router() -> Router:
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer(f"echo: {message.text}", reply_markup=keyboard(("Again", "again")))

    @router.callback_query(F.data == "again")
    async def again(query: CallbackQuery) -> None:
        if isinstance(query.message, Message):
            await query.message.edit_text("pressed")
        await query.answer("done")

    return router


async def test_dispatcher_polls_the_stand_in(fake: FakeTelegram, bot: Bot) -> None:
    dispatcher = Dispatcher()
    dispatcher.include_router(echo_router())
    polling = asyncio.create_task(dispatcher.start_polling(bot, handle_signals=False))
    try:
        fake.user_says(ALICE, "/start now")
        echoed = await fake.wait_for(ALICE.id, lambda m: m.text == "echo: /start now")
        query_id = fake.press(ALICE, echoed, "again")
        edited = await fake.wait_for(ALICE.id, lambda m: m.method == "editMessageText")
        assert (edited.text, edited.buttons()) == ("pressed", [])
        assert (await fake.wait_for_answer(query_id))["text"] == "done"
    finally:
        if not polling.done():
            await dispatcher.stop_polling()
        await asyncio.wait_for(polling, timeout=10)


# --------------------------------------------------------------------------- parsers


async def test_html_parser_entities_and_nesting() -> None:
    text, entities = parse_html(
        '<b>a <i>b</i></b> &lt;3 &#128512; <pre><code class="language-py">x</code></pre>'
    )
    assert text == "a b <3 😀 x"
    assert entities == [
        {"type": "bold", "offset": 0, "length": 3},
        {"type": "italic", "offset": 2, "length": 1},
        {"type": "pre", "offset": 10, "length": 1, "language": "py"},
    ]
    with pytest.raises(BotApiError, match="Unexpected end tag at byte offset 1"):
        parse_html("x</b>")


async def test_markdown_v2_parser_escapes_and_links() -> None:
    text, entities = parse_markdown_v2(r"*5\.00* sats [pay](https://x.io/a\)b) `a.b`")
    assert text == "5.00 sats pay a.b"
    assert entities == [
        {"type": "bold", "offset": 0, "length": 4},
        {"type": "text_link", "offset": 10, "length": 3, "url": "https://x.io/a)b"},
        {"type": "code", "offset": 14, "length": 3},
    ]
