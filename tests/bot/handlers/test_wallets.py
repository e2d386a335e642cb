"""Scripted conversations: /wallet (LndHub credentials) and /address (Lightning Address).

Credentials shown in the chat are used for real: logged in at the running vnode's
`/lndhub/auth`; an address shown is resolved with the strict LNURL client."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import lnurl
import pytest
from lnurl.models import LnurlPayResponse

from harness.redis import RedisServer
from tests.bot.conftest import Vnode, bot_settings, new_user, start_vnode, started
from tests.bot.qr_image import encodes
from vnode.bot.runtime import BotRuntime
from vnode.demo.bot_api import FakeTelegram, SentMessage, TgUser

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GROUP_CHAT = -1009876543210  # this module's own group


def _lndhub_uri(message: SentMessage) -> str:
    return next(w for w in (message.caption or "").split() if w.startswith("lndhub://"))


async def _login(uri: str) -> httpx.Response:
    """Log in at the URI's hub with its login and password, as BlueWallet's import does."""
    credentials, base = uri.removeprefix("lndhub://").split("@", 1)
    login, password = credentials.split(":", 1)
    async with httpx.AsyncClient() as http:
        return await http.post(f"{base}/auth", json={"login": login, "password": password})


def _has_credentials(message: SentMessage) -> bool:
    return message.photo is not None and "lndhub://" in (message.caption or "")


async def _create(telegram: FakeTelegram, user: TgUser, command: str = "/wallet") -> SentMessage:
    """Send /wallet, tap Create credentials, and return the credentials message."""
    telegram.user_says(user, command)
    offer = await telegram.wait_for(user.id, lambda m: "Create credentials" in dict(m.buttons()))
    telegram.press(user, offer, dict(offer.buttons())["Create credentials"])
    return await telegram.wait_for(user.id, _has_credentials)


async def test_wallet_asks_first_then_shows_credentials_that_log_in(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    gina = new_user("Gina")
    await started(telegram, gina)
    telegram.user_says(gina, "/wallet")
    offer = await telegram.wait_for(gina.id, lambda m: bool(m.buttons()))
    # Nothing is issued by the command alone: it warns, and says what an earlier set becomes.
    assert "lndhub://" not in (offer.text or "")
    assert "spend your whole balance" in (offer.text or "") and "stop working" in (offer.text or "")
    assert [text for text, _ in offer.buttons()] == ["Create credentials", "Cancel"]

    telegram.press(gina, offer, dict(offer.buttons())["Create credentials"])
    shown = await telegram.wait_for(gina.id, _has_credentials)
    assert shown.photo is not None and shown.photo.startswith(PNG_MAGIC)
    assert "spend your whole balance" in (shown.caption or "")
    assert [text for text, _ in shown.buttons()] == ["Rotate"]
    # The URI is a code entity (one tap copies it), and it logs in at the hub.
    assert any(e["type"] == "code" for e in shown.entities)
    uri = _lndhub_uri(shown)
    assert uri.endswith(f"@{vnode.url}/lndhub")
    # The QR is of exactly that URI: never upper-cased (the password is case-sensitive).
    assert encodes(shown.photo, uri)
    logged_in = await _login(uri)
    assert logged_in.status_code == 200, logged_in.text
    assert logged_in.json()["access_token"]
    # The offer lost its buttons: it cannot be tapped into a second rotation.
    now = next(m for m in telegram.messages(gina.id) if m.message_id == offer.message_id)
    assert now.buttons() == [] and "New credentials made" in (now.text or "")


async def test_rotate_asks_then_replaces_the_credentials(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    hugo = new_user("Hugo")
    await started(telegram, hugo)
    first = await _create(telegram, hugo)
    old_uri = _lndhub_uri(first)
    assert (await _login(old_uri)).status_code == 200

    telegram.press(hugo, first, dict(first.buttons())["Rotate"])
    ask = await telegram.wait_for(hugo.id, lambda m: "Replace your" in (m.text or ""))
    # Cancel keeps them.
    telegram.press(hugo, ask, dict(ask.buttons())["Cancel"])
    await telegram.wait_for(hugo.id, lambda m: "unchanged" in (m.text or ""))
    assert (await _login(old_uri)).status_code == 200

    telegram.press(hugo, first, dict(first.buttons())["Rotate"])
    ask = await telegram.wait_for(hugo.id, lambda m: "Replace your" in (m.text or ""))
    telegram.press(hugo, ask, dict(ask.buttons())["Create credentials"])
    second = await telegram.wait_for(hugo.id, _has_credentials)
    new_uri = _lndhub_uri(second)
    assert new_uri != old_uri
    # The dead credentials are taken out of the chat; only the new ones are shown.
    shown = [m for m in telegram.messages(hugo.id) if "lndhub://" in (m.caption or "")]
    assert [m.message_id for m in shown] == [second.message_id]
    refused = await _login(old_uri)
    assert refused.status_code == 401 and refused.json()["code"] == 1
    assert (await _login(new_uri)).status_code == 200


async def test_two_taps_on_create_issue_once(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    nora = new_user("Nora")
    await started(telegram, nora)
    telegram.user_says(nora, "/wallet")
    offer = await telegram.wait_for(nora.id, lambda m: "Create credentials" in dict(m.buttons()))
    create = dict(offer.buttons())["Create credentials"]
    telegram.press(nora, offer, create)
    second_tap = telegram.press(nora, offer, create)  # before the bot has seen the first
    answer = await telegram.wait_for_answer(second_tap)
    assert "expired or was used" in str(answer.get("text"))
    shown = await telegram.wait_for(nora.id, _has_credentials)
    await telegram.wait_idle()
    # One set issued (a second would have revoked the one shown), and it works.
    assert [m for m in telegram.messages(nora.id) if _has_credentials(m)] == [shown]
    assert (await _login(_lndhub_uri(shown))).status_code == 200


async def test_a_late_tap_still_gets_its_credentials(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    """Telegram refuses to answer a tap after ~15 s; the offer is taken by then, so the
    credentials must still come (or the user would be left with none)."""
    olaf = new_user("Olaf")
    await started(telegram, olaf)
    telegram.user_says(olaf, "/wallet")
    offer = await telegram.wait_for(olaf.id, lambda m: "Create credentials" in dict(m.buttons()))
    telegram.fail_next(
        "answerCallbackQuery",
        error_code=400,
        description="Bad Request: query is too old and response timeout expired",
    )
    telegram.press(olaf, offer, dict(offer.buttons())["Create credentials"])
    shown = await telegram.wait_for(olaf.id, _has_credentials)
    assert (await _login(_lndhub_uri(shown))).status_code == 200


async def test_wallet_invoice_gives_receive_only_credentials(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    ida = new_user("Ida")
    await started(telegram, ida)
    shown = await _create(telegram, ida, "/wallet invoice")
    assert "receive-only" in (shown.caption or "")
    logged_in = await _login(_lndhub_uri(shown))
    assert logged_in.status_code == 200
    token = logged_in.json()["access_token"]
    async with httpx.AsyncClient() as http:
        paid = await http.post(
            f"{vnode.url}/lndhub/payinvoice",
            json={"invoice": "lnbcrt1invalid"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert paid.status_code == 403 and paid.json()["code"] == 8  # this scope never pays


async def test_wallet_in_a_group_posts_no_credentials(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    jack = new_user("Jack")
    await started(telegram, jack)
    telegram.user_says(jack, "/wallet", chat_id=GROUP_CHAT, chat_type="supergroup")
    told = await telegram.wait_for(GROUP_CHAT, lambda m: "private chat" in (m.text or ""))
    assert told.buttons() == []  # not even a button whose tap would issue them
    telegram.user_says(jack, "/wallet invoice", chat_id=GROUP_CHAT, chat_type="supergroup")
    await telegram.wait_for(GROUP_CHAT, lambda m: "private chat" in (m.text or ""))
    for message in telegram.messages(GROUP_CHAT):
        assert "lndhub" not in (message.text or "") + (message.caption or "")
        assert message.photo is None


async def test_address_claims_shows_and_resolves(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    kim = new_user("Kim", "kim")
    await started(telegram, kim)
    telegram.user_says(kim, "/address")
    hint = await telegram.wait_for(kim.id)
    assert "no Lightning Address yet" in (hint.text or "") and hint.photo is None
    # The name is the one the user types (never the username), case-insensitive.
    name = f"kim-{secrets.token_hex(4)}"
    telegram.user_says(kim, f"/address {name.upper()}")
    card = await telegram.wait_for(kim.id, lambda m: m.photo is not None)
    assert card.photo is not None and card.photo.startswith(PNG_MAGIC)
    host = vnode.url.removeprefix("http://").split(":")[0]
    assert f"is now {name}@{host}" in (card.caption or "")
    shown_lnurl = next(w for w in (card.caption or "").split() if w.startswith("LNURL"))
    assert (await vnode.admin.address(kim.id)).lnurl == shown_lnurl
    # Upper case, the QR's alphanumeric mode, with the scheme wallets' scanners expect.
    assert encodes(card.photo, f"LIGHTNING:{shown_lnurl}")
    request = await lnurl.handle(shown_lnurl)
    assert isinstance(request, LnurlPayResponse)
    async with httpx.AsyncClient() as http:
        well_known = await http.get(f"{vnode.url}/.well-known/lnurlp/{name}")
    assert well_known.json()["tag"] == "payRequest"

    telegram.user_says(kim, "/address")
    again = await telegram.wait_for(kim.id, lambda m: m.photo is not None)
    assert f"Your Lightning Address: {name}@{host}" in (again.caption or "")

    # Another name: shown, and the user is told the old one pays them only for a while.
    other = f"kim2-{secrets.token_hex(4)}"
    telegram.user_says(kim, f"/address {other}")
    moved = await telegram.wait_for(kim.id, lambda m: m.photo is not None)
    assert f"is now {other}@{host}" in (moved.caption or "")
    assert f"{name}@{host} still pays you for a while" in (moved.caption or "")
    assert (await vnode.admin.address(kim.id)).name == other


async def test_address_refusals_are_told(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    lea, max_ = new_user("Lea"), new_user("Max")
    await started(telegram, lea)
    await started(telegram, max_)
    name = f"lea-{secrets.token_hex(4)}"
    await vnode.admin.claim_address(lea.id, name)
    for said, expected in (
        (f"/address {name}", "taken"),
        ("/address admin", "reserved"),
        ("/address no!way", "can't be an address"),
        ("/address two words", "Usage"),
        ("/address", "no Lightning Address yet"),  # the refused claims claimed nothing
    ):
        telegram.user_says(max_, said)
        answer = await telegram.wait_for(max_.id)
        assert expected in (answer.text or ""), (said, answer.text)
    assert all(m.photo is None for m in telegram.messages(max_.id))
    stranger = new_user("Stranger")
    telegram.user_says(stranger, f"/address s-{secrets.token_hex(4)}")
    assert "/start" in ((await telegram.wait_for(stranger.id)).text or "")


@pytest.fixture
async def bot_without_addresses(
    pg_server: str,
    template_db: str,
    bot_redis: RedisServer,
    own_telegram: FakeTelegram,
    tmp_path: Path,
) -> AsyncIterator[BotRuntime]:
    """A bot of its own on a vnode without VNODE_PUBLIC_URL: Lightning Addresses are off."""
    stream = f"test:{secrets.token_hex(4)}"
    running = await start_vnode(
        pg_server, template_db, tmp_path / "vnode", bot_redis.url, stream, public_url=False
    )
    runtime = BotRuntime(bot_settings(running, own_telegram, bot_redis.url))
    await runtime.start()
    yield runtime
    await runtime.stop()
    await running.admin.close()
    running.serve.stop()


async def test_address_when_addresses_are_off_says_so(
    bot_without_addresses: BotRuntime, own_telegram: FakeTelegram
) -> None:
    olga = new_user("Olga")
    await started(own_telegram, olga)
    for said in ("/address olga", "/address"):
        own_telegram.user_says(olga, said)
        answer = await own_telegram.wait_for(olga.id)
        assert "not enabled on this service" in (answer.text or ""), (said, answer.text)
        assert answer.photo is None
