"""The demo's web chat page: a person plays Alice, Bob and a group side by side against the real
bot, through the local Bot API server (bot_api.py). The page (templates/chat.html, plain
JavaScript in static/, nothing from a CDN: it works offline) polls each chat's transcript and
posts what the person types and taps; this module turns that into Bot API updates. A button
pays an invoice "from outside" through the simulated node's control API.

It listens on loopback only and has no authentication: it speaks for every demo user, which is
only acceptable because nothing here is real (the page says so)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from vnode.demo.bot_api import FakeTelegram, JsonDict, SentMessage, TgUser

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Chat:
    """A pane of the page: a private chat of one person, or a group several people share."""

    key: str
    id: int
    title: str
    members: tuple[TgUser, ...]

    @property
    def kind(self) -> str:
        return "private" if self.id > 0 else "group"


# Telegram usernames have at least 5 characters (the bot refuses shorter ones as names).
ALICE = TgUser(id=1001, first_name="Alice", username="alice_demo")
BOB = TgUser(id=1002, first_name="Bob", username="bob_demo")
CHATS = (
    Chat("alice", ALICE.id, "Alice", (ALICE,)),
    Chat("bob", BOB.id, "Bob", (BOB,)),
    Chat("group", -1003, "Demo group", (ALICE, BOB)),
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Say(_Body):
    chat: str
    user: int
    text: str = Field(min_length=1, max_length=4096)


class Press(_Body):
    chat: str
    user: int
    message_id: int
    data: str = Field(max_length=64)


class PayFromOutside(_Body):
    invoice: str = Field(min_length=1, max_length=4096)
    amount_sats: int | None = Field(default=None, ge=1)


def _chat(key: str) -> Chat:
    for chat in CHATS:
        if chat.key == key:
            return chat
    raise HTTPException(404, f"no chat {key!r}")


def _member(chat: Chat, user_id: int) -> TgUser:
    for user in chat.members:
        if user.id == user_id:
            return user
    raise HTTPException(400, f"user {user_id} is not in {chat.title}")


def _entry(chat: Chat, item: SentMessage | JsonDict) -> dict[str, Any]:
    """One message as the page draws it (plain text: the page never renders HTML it gets)."""
    if isinstance(item, SentMessage):
        rows = (item.reply_markup or {}).get("inline_keyboard", [])
        return {
            "id": item.message_id,
            "side": "bot",
            "text": item.text if item.text is not None else item.caption,
            "photo": f"/api/photo/{chat.key}/{item.message_id}" if item.photo else None,
            "buttons": [
                [
                    {"text": b.get("text", ""), "data": b.get("callback_data")}
                    for b in row
                    if isinstance(b, dict)
                ]
                for row in rows
            ],
            "edited": bool(item.edits),
        }
    sender = item.get("from", {})
    return {
        "id": item["message_id"],
        "side": "user",
        "from": sender.get("first_name", ""),
        "user": sender.get("id"),
        "text": item.get("text", ""),
        "photo": None,
        "buttons": [],
        "edited": False,
    }


def create_web_app(telegram: FakeTelegram, sim_url: str) -> FastAPI:
    app = FastAPI(title="bitMaskRGB demo", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=_HERE / "templates")
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request) -> Response:
        return templates.TemplateResponse(
            request, "chat.html", {"chats": CHATS, "bot_name": telegram.bot_username}
        )

    @app.get("/api/chat/{key}")
    async def transcript(key: str) -> list[dict[str, Any]]:
        chat = _chat(key)
        return [_entry(chat, item) for item in telegram.transcript(chat.id)]

    @app.get("/api/photo/{key}/{message_id}")
    async def photo(key: str, message_id: int) -> Response:
        chat = _chat(key)
        for message in telegram.messages(chat.id):
            if message.message_id == message_id and message.photo:
                png = message.photo.startswith(b"\x89PNG")
                return Response(message.photo, media_type="image/png" if png else "image/jpeg")
        raise HTTPException(404, "no such photo")

    @app.post("/api/say")
    async def say(body: Say) -> dict[str, bool]:
        chat = _chat(body.chat)
        user = _member(chat, body.user)
        if chat.kind == "private":
            telegram.user_says(user, body.text)
        else:
            telegram.user_says(
                user, body.text, chat_id=chat.id, chat_type="group", chat_title=chat.title
            )
        return {"ok": True}

    @app.post("/api/press")
    async def press(body: Press) -> dict[str, bool]:
        chat = _chat(body.chat)
        user = _member(chat, body.user)
        for message in telegram.messages(chat.id):
            if message.message_id == body.message_id and body.data in message.callback_data():
                telegram.press(user, message, body.data)
                return {"ok": True}
        raise HTTPException(409, "that button is gone (the bot removed it)")

    @app.post("/api/pay")
    async def pay(body: PayFromOutside) -> dict[str, Any]:
        """An outside payer (the simulated node's control API) pays the invoice."""
        request: dict[str, Any] = {"invoice": body.invoice}
        if body.amount_sats is not None:
            request["amt_msat"] = body.amount_sats * 1000
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(f"{sim_url}/_sim/pay", json=request)
        if answer.status_code != 200:
            detail = answer.json().get("error", answer.text) if answer.content else ""
            raise HTTPException(400, f"the outside payer could not pay: {detail}")
        return {"ok": True}

    return app
