"""A protocol-faithful local Bot API server: the stand-in for Telegram that the bot's tests run
against, and that `vnode demo` serves so that anyone can chat with the bot without Telegram
(it moved here from tests/bot/ for that).

The real aiogram client talks to it over HTTP on 127.0.0.1 exactly as it would talk to
api.telegram.org: point aiogram at it with ``TelegramAPIServer.from_base(fake.base_url)``
and requests arrive as ``POST {base}/bot{token}/{method}`` with form data (urlencoded, or
multipart when a file is uploaded) or a JSON body.

Behaviour follows https://core.telegram.org/bots/api: ``{"ok": true, "result": ...}`` on
success, ``{"ok": false, "error_code": ..., "description": ...}`` on failure, with the
descriptions Telegram really uses ("Bad Request: chat not found", "Bad Request: message is
not modified: ...", ...). Things a real bot gets wrong and Telegram rejects are rejected
here too: unbalanced or unsupported HTML tags, over-long texts, callback data over 64 bytes,
editing without a change, answering a callback query twice, sending to a chat that never
talked to the bot.

The test, or the demo's chat page, plays the users (``user_says``, ``press``) and observes the
bot (``wait_for``, ``messages``, ``transcript``, ``calls``). Deliberately not modelled: webhooks
are stored but never pushed, URLs given as files are not fetched, inline mode, channels, media
other than photos.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.web_request import FileField

JsonDict = dict[str, Any]
_T = TypeVar("_T")

TEXT_LIMIT = 4096  # UTF-16 code units after entity parsing, as Telegram counts
CAPTION_LIMIT = 1024
CALLBACK_ANSWER_LIMIT = 200
CALLBACK_DATA_LIMIT = 64  # bytes
# Updates Telegram leaves out unless they are asked for explicitly.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_COMMAND_SCOPES = frozenset(
    {
        "default",
        "all_private_chats",
        "all_group_chats",
        "all_chat_administrators",
        "chat",
        "chat_administrators",
        "chat_member",
    }
)
_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
_QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"


# --------------------------------------------------------------------------- errors


class BotApiError(Exception):
    """A Bot API failure, turned into Telegram's JSON error envelope by the HTTP layer."""

    def __init__(self, error_code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def payload(self) -> JsonDict:
        body: JsonDict = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad_request(detail: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: {detail}")


def _entities_error(detail: str) -> BotApiError:
    return bad_request(f"can't parse entities: {detail}")


# --------------------------------------------------------------------------- public records


@dataclass(frozen=True)
class TgUser:
    """A Telegram user the test plays."""

    id: int
    first_name: str
    username: str | None = None
    language_code: str | None = "en"
    is_bot: bool = False

    def to_api(self) -> JsonDict:
        data: JsonDict = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        return data


@dataclass(frozen=True)
class IncomingMessage:
    """A message a user sent to the bot (see ``FakeTelegram.user_says``)."""

    chat_id: int
    message_id: int
    user: TgUser
    text: str


@dataclass
class SentMessage:
    """One message the bot sent, as the stand-in stores it (its current state)."""

    chat_id: int
    message_id: int
    text: str | None  # entities stripped, as a user would see it
    caption: str | None
    photo: bytes | None  # raw bytes of the photo (uploaded, or resent by file_id)
    reply_markup: JsonDict | None  # as sent
    parse_mode: str | None
    reply_to_message_id: int | None
    method: str  # the last method that produced this state: sendMessage, editMessageText...
    edits: list[str] = field(default_factory=list)  # earlier texts/captions, oldest first
    raw_text: str | None = None  # text or caption exactly as the bot sent it (with markup)
    entities: list[JsonDict] = field(default_factory=list)  # of the text or the caption
    photo_sizes: list[JsonDict] = field(default_factory=list)
    date: int = 0
    edit_date: int | None = None
    deleted: bool = False
    document: bytes | None = None  # raw bytes of a document (sendDocument)
    document_name: str | None = None

    def buttons(self) -> list[tuple[str, str]]:
        """(text, callback_data) of every inline button in row order.

        Buttons without callback data (url, copy_text...) report that value instead, so
        their presence can still be asserted; they cannot be pressed.
        """
        found: list[tuple[str, str]] = []
        for row in (self.reply_markup or {}).get("inline_keyboard", []):
            for button in row:
                found.append((button.get("text", ""), _button_value(button)))
        return found

    def callback_data(self) -> list[str]:
        return [
            button["callback_data"]
            for row in (self.reply_markup or {}).get("inline_keyboard", [])
            for button in row
            if "callback_data" in button
        ]

    def describe(self) -> str:
        body = self.text if self.text is not None else f"[photo] {self.caption or ''}"
        keys = f" buttons={self.buttons()}" if self.buttons() else ""
        return f"{self.method} id={self.message_id} {body!r}{keys}"


_BUTTON_KINDS = (
    "callback_data",
    "url",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


def _button_value(button: JsonDict) -> str:
    for kind in _BUTTON_KINDS:
        if kind in button:
            value = button[kind]
            return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return ""


# --------------------------------------------------------------------------- text formatting


def _utf16_len(text: str) -> int:
    # Telegram measures offsets and limits in UTF-16 code units.
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    # Telegram reports parse errors at UTF-8 byte offsets.
    return len(text[:index].encode())


class _TextBuilder:
    """Collects the plain text of a parsed message and tracks its UTF-16 length."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self.u16 = 0

    def add(self, chunk: str) -> None:
        self._parts.append(chunk)
        self.u16 += _utf16_len(chunk)

    def text(self) -> str:
        return "".join(self._parts)


def _entity(kind: str, start: int, end: int, **extra: Any) -> JsonDict | None:
    if end <= start:
        return None  # Telegram drops empty entities
    return {"type": kind, "offset": start, "length": end - start, **extra}


def _sorted_entities(entities: list[JsonDict | None]) -> list[JsonDict]:
    kept = [e for e in entities if e is not None]
    return sorted(kept, key=lambda e: (e["offset"], -e["length"]))


# ---- HTML (https://core.telegram.org/bots/api#html-style)

_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
    "tg-time": "date_time",
}
_NAMED_HTML_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_ENTITY = re.compile(r"&(#x[0-9a-fA-F]{1,8}|#[0-9]{1,10}|[a-zA-Z]{1,10});")


@dataclass
class _OpenTag:
    name: str
    attrs: dict[str, str]
    start: int  # UTF-16 offset in the plain text
    language: str | None = None  # of a <pre>, from a nested <code class="language-...">


def _decode_html_entity(text: str, index: int) -> tuple[str, int]:
    """Decode the entity at ``index``; a bare '&' stays literal, as Telegram tolerates."""
    match = _HTML_ENTITY.match(text, index)
    if match is None:
        return "&", index + 1
    name = match.group(1)
    if not name.startswith("#"):
        decoded = _NAMED_HTML_ENTITIES.get(name)
        return (decoded, match.end()) if decoded else ("&", index + 1)
    code = int(name[2:], 16) if name[1] in "xX" else int(name[1:])
    if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
        return chr(code), match.end()
    return "&", index + 1


def _decode_html_text(value: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(value):
        if value[index] == "&":
            chunk, index = _decode_html_entity(value, index)
        else:
            chunk, index = value[index], index + 1
        out.append(chunk)
    return "".join(out)


def _skip_spaces(text: str, index: int) -> int:
    while index < len(text) and text[index].isspace():
        index += 1
    return index


def _scan_name(text: str, index: int) -> int:
    while index < len(text) and not text[index].isspace() and text[index] != ">":
        index += 1
    return index


def _read_attr_value(text: str, index: int, begin: int) -> tuple[str, int]:
    unclosed = _entities_error(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
    if index >= len(text):
        raise unclosed
    if text[index] in "'\"":
        end = text.find(text[index], index + 1)
        if end < 0:
            raise unclosed
        return _decode_html_text(text[index + 1 : end]), end + 1
    end = _scan_name(text, index)
    return _decode_html_text(text[index:end]), end


def _read_html_attrs(text: str, index: int, tag: str, begin: int) -> tuple[dict[str, str], int]:
    """Parse attributes up to the closing '>' and return them with the index of that '>'."""
    attrs: dict[str, str] = {}
    unclosed = _entities_error(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
    while True:
        index = _skip_spaces(text, index)
        if index >= len(text):
            raise unclosed
        if text[index] == ">":
            return attrs, index
        end = index
        while end < len(text) and (text[end].isalnum() or text[end] in "-_"):
            end += 1
        name = text[index:end].lower()
        if not name:
            raise _entities_error(
                f'Empty attribute name in the tag "{tag}" at byte offset '
                f"{_byte_offset(text, index)}"
            )
        index = _skip_spaces(text, end)
        if index < len(text) and text[index] != "=":
            if tag == "blockquote" and name == "expandable":
                attrs[name] = ""
                continue
            raise _entities_error(
                f'Expected equal sign in declaration of an attribute of the tag "{tag}" at '
                f"byte offset {_byte_offset(text, begin)}"
            )
        attrs[name], index = _read_attr_value(text, _skip_spaces(text, index + 1), begin)


def _open_html_tag(text: str, index: int, stack: list[_OpenTag], out: _TextBuilder) -> int:
    begin = index
    end = _scan_name(text, index + 1)
    if end >= len(text):
        raise _entities_error(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
    tag = text[index + 1 : end].lower()
    if tag not in _HTML_TAGS:
        raise _entities_error(
            f'Unsupported start tag "{tag}" at byte offset {_byte_offset(text, begin)}'
        )
    attrs, close = _read_html_attrs(text, end, tag, begin)
    if tag == "span" and attrs.get("class") != "tg-spoiler":
        raise _entities_error(
            f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(text, begin)}'
        )
    stack.append(_OpenTag(tag, attrs, out.u16))
    return close + 1


def _html_entity(tag: _OpenTag, end: int, stack: list[_OpenTag]) -> JsonDict | None:
    kind = _HTML_TAGS[tag.name]
    if kind == "code" and stack and stack[-1].name == "pre":
        language = tag.attrs.get("class", "")
        if language.startswith("language-"):
            # <pre><code class="language-x"> is one pre entity with a language.
            stack[-1].language = language.removeprefix("language-")
            return None
    if kind == "text_link":
        href = tag.attrs.get("href", "")
        return _entity(kind, tag.start, end, url=href) if href else None
    if kind == "pre" and tag.language:
        return _entity(kind, tag.start, end, language=tag.language)
    if kind == "blockquote" and "expandable" in tag.attrs:
        return _entity("expandable_blockquote", tag.start, end)
    if kind == "custom_emoji":
        return _entity(kind, tag.start, end, custom_emoji_id=tag.attrs.get("emoji-id", ""))
    if kind == "date_time":
        return _date_time_entity(tag, end)
    return _entity(kind, tag.start, end)


def _date_time_entity(tag: _OpenTag, end: int) -> JsonDict | None:
    unix = tag.attrs.get("unix", "")
    if not unix.isdigit():
        return None
    extra: JsonDict = {"unix_time": int(unix)}
    if tag.attrs.get("format"):
        extra["date_time_format"] = tag.attrs["format"]
    return _entity("date_time", tag.start, end, **extra)


def _close_html_tag(
    text: str,
    index: int,
    stack: list[_OpenTag],
    out: _TextBuilder,
    entities: list[JsonDict | None],
) -> int:
    begin = index
    if not stack:
        raise _entities_error(f"Unexpected end tag at byte offset {_byte_offset(text, begin)}")
    end = _scan_name(text, index + 2)
    name = text[index + 2 : end].lower()
    end = _skip_spaces(text, end)
    if end >= len(text) or text[end] != ">":
        raise _entities_error(f"Unclosed end tag at byte offset {_byte_offset(text, begin)}")
    if name and name != stack[-1].name:
        raise _entities_error(
            f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
            f'expected "</{stack[-1].name}>", found "</{name}>"'
        )
    tag = stack.pop()
    entities.append(_html_entity(tag, out.u16, stack))
    return end + 1


def parse_html(text: str) -> tuple[str, list[JsonDict]]:
    """Telegram's HTML parse mode: plain text and entities, or a 400 like Telegram's."""
    out = _TextBuilder()
    stack: list[_OpenTag] = []
    entities: list[JsonDict | None] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "&":
            chunk, index = _decode_html_entity(text, index)
            out.add(chunk)
        elif char != "<":
            out.add(char)
            index += 1
        elif text.startswith("</", index):
            index = _close_html_tag(text, index, stack, out, entities)
        else:
            index = _open_html_tag(text, index, stack, out)
    if stack:
        raise _entities_error(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    return out.text(), _sorted_entities(entities)


# ---- MarkdownV2 (https://core.telegram.org/bots/api#markdownv2-style)

_MDV2_RESERVED = "_*[]()~`>#+-=|{}.!"
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}
_MDV2_CLOSERS = {
    "bold": "*",
    "strikethrough": "~",
    "underline": "__",
    "spoiler": "||",
    "code": "`",
    "pre": "```",
    "text_link": "]",
    "custom_emoji": "]",
}


@dataclass
class _MdOpen:
    kind: str
    start: int
    byte_offset: int
    language: str | None = None


def _is_escapable(char: str) -> bool:
    return 0 < ord(char) <= 126


def _mdv2_closes(kind: str, text: str, index: int) -> bool:
    if kind == "italic":
        return text[index] == "_" and not text.startswith("__", index)
    return text.startswith(_MDV2_CLOSERS[kind], index)


def _reserved_error(char: str) -> BotApiError:
    return _entities_error(
        f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
    )


def _mdv2_pre_language(text: str, index: int) -> tuple[str | None, int]:
    """After an opening ```: read an optional language and skip the first newline."""
    end = index
    while end < len(text) and not text[end].isspace() and text[end] != "`":
        end += 1
    language = None
    if end > index and end < len(text) and text[end] != "`":
        language, index = text[index:end], end
    if index < len(text) and text[index] in "\r\n":
        index += 1
    return language, index


def _mdv2_open(text: str, index: int, stack: list[_MdOpen], out: _TextBuilder) -> int:
    char = text[index]
    offset = _byte_offset(text, index)
    opened: tuple[str, int]
    if char == "_":
        opened = ("underline", 2) if text.startswith("__", index) else ("italic", 1)
    elif char in "*~[":
        opened = ({"*": "bold", "~": "strikethrough", "[": "text_link"}[char], 1)
    elif char == "|" and text.startswith("||", index):
        opened = ("spoiler", 2)
    elif char == "!" and text.startswith("![", index):
        opened = ("custom_emoji", 2)
    elif char == "`" and text.startswith("```", index):
        language, after = _mdv2_pre_language(text, index + 3)
        stack.append(_MdOpen("pre", out.u16, offset, language))
        return after
    elif char == "`":
        opened = ("code", 1)
    else:
        raise _reserved_error(char)
    stack.append(_MdOpen(opened[0], out.u16, offset))
    return index + opened[1]


def _mdv2_url(text: str, index: int) -> tuple[str | None, int]:
    """Read '(url)' right after a link's ']'; ')' and '\\' inside must be escaped."""
    if not text.startswith("(", index):
        return None, index
    chars: list[str] = []
    cursor = index + 1
    while cursor < len(text) and text[cursor] != ")":
        if text[cursor] == "\\" and cursor + 1 < len(text) and _is_escapable(text[cursor + 1]):
            cursor += 1
        chars.append(text[cursor])
        cursor += 1
    if cursor >= len(text):
        raise _entities_error(
            f"Can't find end of a URL at byte offset {_byte_offset(text, index + 1)}"
        )
    return "".join(chars), cursor + 1


def _mdv2_close(
    text: str, index: int, opened: _MdOpen, out: _TextBuilder, entities: list[JsonDict | None]
) -> int:
    if opened.kind in ("text_link", "custom_emoji"):
        url, after = _mdv2_url(text, index + 1)
        if opened.kind == "custom_emoji":
            emoji_id = (url or "").partition("id=")[2]
            entities.append(
                _entity("custom_emoji", opened.start, out.u16, custom_emoji_id=emoji_id)
            )
        elif url:
            entities.append(_entity("text_link", opened.start, out.u16, url=url))
        return after
    if opened.kind == "pre" and opened.language:
        entities.append(_entity("pre", opened.start, out.u16, language=opened.language))
    else:
        entities.append(_entity(opened.kind, opened.start, out.u16))
    return index + len(_MDV2_CLOSERS.get(opened.kind, "_"))


def parse_markdown_v2(text: str) -> tuple[str, list[JsonDict]]:
    """Telegram's MarkdownV2: unescaped reserved characters are rejected, like Telegram does."""
    out = _TextBuilder()
    stack: list[_MdOpen] = []
    entities: list[JsonDict | None] = []
    quote_start: int | None = None
    index = 0
    while index < len(text):
        char = text[index]
        in_code = bool(stack) and stack[-1].kind in ("code", "pre")
        if char == "\\" and index + 1 < len(text) and _is_escapable(text[index + 1]):
            out.add(text[index + 1])
            index += 2
            continue
        if char == ">" and not in_code and (index == 0 or text[index - 1] == "\n"):
            # '>' opening a line starts (or continues) a block quotation.
            quote_start = out.u16 if quote_start is None else quote_start
            index += 1
            continue
        if char == "\n" and quote_start is not None and not text.startswith(">", index + 1):
            entities.append(_entity("blockquote", quote_start, out.u16))
            quote_start = None
        if char not in ("`" if in_code else _MDV2_RESERVED):
            out.add(char)
            index += 1
        elif stack and _mdv2_closes(stack[-1].kind, text, index):
            index = _mdv2_close(text, index, stack.pop(), out, entities)
        else:
            index = _mdv2_open(text, index, stack, out)
    if quote_start is not None:
        entities.append(_entity("blockquote", quote_start, out.u16))
    if stack:
        top = stack[-1]
        raise _entities_error(
            f"Can't find end of {_MDV2_NAMES[top.kind]} entity at byte offset {top.byte_offset}"
        )
    return out.text(), _sorted_entities(entities)


# ---- legacy Markdown (https://core.telegram.org/bots/api#markdown-style)

_MD_KINDS = {"_": ("italic", "_"), "*": ("bold", "*"), "`": ("code", "`"), "[": ("text_link", "]")}


def parse_markdown(text: str) -> tuple[str, list[JsonDict]]:
    """Legacy Markdown: no nesting, an entity must be closed before the text ends."""
    out = _TextBuilder()
    entities: list[JsonDict | None] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in _MD_KINDS:
            out.add(text[index + 1])
            index += 2
            continue
        if char not in _MD_KINDS:
            out.add(char)
            index += 1
            continue
        kind, closer = ("pre", "```") if text.startswith("```", index) else _MD_KINDS[char]
        body_start = index + len(closer) if kind != "text_link" else index + 1
        end = text.find(closer, body_start)
        if end < 0:
            raise _entities_error(
                f"Can't find end of the entity starting at byte offset {_byte_offset(text, index)}"
            )
        start = out.u16
        out.add(text[body_start:end])
        index = end + len(closer)
        if kind == "text_link":
            url, index = _markdown_url(text, index)
            entities.append(_entity(kind, start, out.u16, url=url) if url else None)
        else:
            entities.append(_entity(kind, start, out.u16))
    return out.text(), _sorted_entities(entities)


def _markdown_url(text: str, index: int) -> tuple[str | None, int]:
    if not text.startswith("(", index):
        return None, index
    end = text.find(")", index)
    if end < 0:
        return None, index
    return text[index + 1 : end], end + 1


# ---- the whole pipeline


@dataclass
class FormattedText:
    text: str
    entities: list[JsonDict]


_TRIMMED = " \t\r\n"


def _trim(text: str, entities: list[JsonDict]) -> FormattedText:
    """Drop leading/trailing whitespace like Telegram does, keeping entities aligned."""
    left = _utf16_len(text[: len(text) - len(text.lstrip(_TRIMMED))])
    trimmed = text.strip(_TRIMMED)
    size = _utf16_len(trimmed)
    kept: list[JsonDict] = []
    for entity in entities:
        start = max(entity["offset"] - left, 0)
        end = min(entity["offset"] + entity["length"] - left, size)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return FormattedText(trimmed, kept)


def _explicit_entities(value: Any) -> list[JsonDict]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(_is_entity(item) for item in value):
        raise bad_request("can't parse entities JSON object")
    return [dict(item) for item in value]


def _is_entity(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("type"), str)
        and isinstance(item.get("offset"), int)
        and isinstance(item.get("length"), int)
    )


def format_text(raw: str, parse_mode: str | None, entities: Any = None) -> FormattedText:
    """Apply parse_mode (or explicit entities) the way Telegram does before storing a text."""
    mode = (parse_mode or "").strip().lower()
    if mode == "html":
        plain, found = parse_html(raw)
    elif mode == "markdownv2":
        plain, found = parse_markdown_v2(raw)
    elif mode == "markdown":
        plain, found = parse_markdown(raw)
    elif mode in ("", "none"):
        plain, found = raw, _explicit_entities(entities)
    else:
        raise bad_request("unsupported parse_mode")
    return _trim(plain, found)


def _incoming_entities(text: str) -> list[JsonDict]:
    """Entities a Telegram client attaches to what a user types: a leading command, mentions."""
    found: list[JsonDict | None] = []
    command = re.match(r"/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]{3,32})?", text)
    if command:
        found.append(_entity("bot_command", 0, _utf16_len(command.group())))
    for mention in re.finditer(r"(?<![\w@/])@[A-Za-z][A-Za-z0-9_]{3,31}\b", text):
        start = _utf16_len(text[: mention.start()])
        found.append(_entity("mention", start, start + _utf16_len(mention.group())))
    return _sorted_entities(found)


# --------------------------------------------------------------------------- reply markup


def _inline_keyboard_error() -> BotApiError:
    return bad_request(
        'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
    )


def _check_button(button: Any) -> None:
    if not isinstance(button, dict):
        raise bad_request("inlineKeyboardButton must be an Object")
    if not isinstance(button.get("text"), str):
        raise bad_request(
            'can\'t parse inline keyboard button: Field "text" must be of type String'
        )
    kinds = [kind for kind in _BUTTON_KINDS if kind in button]
    if not kinds:
        raise bad_request("text buttons are unallowed in the inline keyboard")
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode()) <= CALLBACK_DATA_LIMIT:
            raise bad_request("BUTTON_DATA_INVALID")
    if "url" in button and not str(button["url"]).strip():
        raise bad_request("BUTTON_URL_INVALID")


def parse_reply_markup(value: Any, *, inline_only: bool = False) -> JsonDict | None:
    """Validate a reply_markup value (JSON string or object) like Telegram does."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise bad_request("can't parse reply keyboard markup JSON object") from exc
    if not isinstance(value, dict):
        raise bad_request("object expected as reply markup")
    if "inline_keyboard" in value:
        rows = value["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _inline_keyboard_error()
        for row in rows:
            for button in row:
                _check_button(button)
        return value
    if inline_only:
        raise bad_request("inline keyboard expected")
    if any(key in value for key in ("keyboard", "remove_keyboard", "force_reply")):
        return value
    raise bad_request("can't parse reply keyboard markup JSON object")


# --------------------------------------------------------------------------- photos


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, JPEG or GIF, read from its header; None if not an image."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 <= len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        length = int(struct.unpack(">H", data[index + 2 : index + 4])[0])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return int(width), int(height)
        index += 2 + length
    return None


def _scaled(width: int, height: int, box: int) -> tuple[int, int]:
    largest = max(width, height)
    if largest <= box:
        return width, height
    return max(1, width * box // largest), max(1, height * box // largest)


# --------------------------------------------------------------------------- request params

_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "reply_parameters",
        "entities",
        "caption_entities",
        "commands",
        "scope",
        "allowed_updates",
        "link_preview_options",
    }
)
_INT_FIELDS = frozenset(
    {"chat_id", "message_id", "reply_to_message_id", "offset", "limit", "timeout", "cache_time"}
)


def _lenient(name: str, value: Any) -> Any:
    """Best-effort decoding of a form value, for the call log only."""
    if not isinstance(value, str):
        return value
    if name in _JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            return value
    if name in _INT_FIELDS and re.fullmatch(r"-?\d+", value):
        return int(value)
    return value


class Params:
    """Typed access to one request's parameters, however they were encoded."""

    def __init__(
        self, values: dict[str, Any], files: dict[str, bytes], names: dict[str, str] | None = None
    ) -> None:
        self._values = values
        self._files = files
        self._names = names or {}  # the file name of each upload

    def raw(self, name: str) -> Any:
        value = self._values.get(name)
        return None if value is None or value == "" else value

    def string(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value) if isinstance(value, dict | list) else str(value)

    def integer(self, name: str) -> int | None:
        value = self.raw(name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
        raise bad_request(f'field "{name}" must be of type Integer')

    def boolean(self, name: str) -> bool:
        value = self.raw(name)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1")
        return bool(value)

    def json(self, name: str) -> Any:
        value = self.raw(name)
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError as exc:
            raise bad_request(f"can't parse {name} JSON object") from exc

    def file(self, name: str) -> bytes | str | None:
        """Uploaded bytes (directly or via attach://), else the string (file_id or URL)."""
        if name in self._files:
            return self._files[name]
        value = self.string(name)
        if value is not None and value.startswith("attach://"):
            attached = self._files.get(value.removeprefix("attach://"))
            if attached is None:
                raise bad_request("wrong file identifier/HTTP URL specified")
            return attached
        return value

    def file_name(self, name: str) -> str | None:
        value = self.string(name)
        if value is not None and value.startswith("attach://"):
            return self._names.get(value.removeprefix("attach://"))
        return self._names.get(name)

    def snapshot(self) -> JsonDict:
        logged = {name: _lenient(name, value) for name, value in self._values.items()}
        logged.update(self._files)
        return logged


async def read_params(request: web.Request) -> Params:
    values: dict[str, Any] = dict(request.query)
    files: dict[str, bytes] = {}
    names: dict[str, str] = {}
    if request.content_type == "application/json" and request.can_read_body:
        try:
            body = await request.json()
        except ValueError as exc:
            raise bad_request("can't parse JSON request body") from exc
        if not isinstance(body, dict):
            raise bad_request("JSON object expected as request body")
        values.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for name, value in form.items():
            if isinstance(value, FileField):
                files[name] = value.file.read()
                names[name] = value.filename
            elif isinstance(value, bytes | bytearray):
                values[name] = bytes(value).decode()
            else:
                values[name] = value
    return Params(values, files, names)


# --------------------------------------------------------------------------- the fake


@dataclass
class _Chat:
    id: int
    type: str
    title: str | None = None
    user: TgUser | None = None  # the other side of a private chat
    bot_messages: dict[int, SentMessage] = field(default_factory=dict)
    user_messages: dict[int, JsonDict] = field(default_factory=dict)
    last_message_id: int = 0

    def next_message_id(self) -> int:
        # User and bot messages share one sequence per chat, as on Telegram.
        self.last_message_id += 1
        return self.last_message_id

    def to_api(self) -> JsonDict:
        if self.type == "private" and self.user is not None:
            data: JsonDict = {"id": self.id, "type": "private", "first_name": self.user.first_name}
            if self.user.username:
                data["username"] = self.user.username
            return data
        return {"id": self.id, "type": self.type, "title": self.title or f"Group {self.id}"}


@dataclass(frozen=True)
class _Injected:
    error_code: int
    description: str
    retry_after: int | None


class FakeTelegram:
    """A local Bot API server for one bot, driven by the test."""

    def __init__(
        self,
        token: str,
        bot_id: int | None = None,
        bot_username: str = "bitMaskRGB_bot",
        *,
        bot_first_name: str = "bitMaskRGB",
        privacy_mode: bool = True,
    ) -> None:
        prefix = token.partition(":")[0]
        token_id = int(prefix) if prefix.isdigit() else None
        if bot_id is not None and token_id is not None and bot_id != token_id:
            # A real token always starts with its bot's id; aiogram derives bot.id from it.
            raise ValueError(f"bot_id {bot_id} does not match the token's id {token_id}")
        self.token = token
        self.bot_id = bot_id or token_id or 7000000001
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.privacy_mode = privacy_mode  # Telegram's default: groups deliver commands only
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._changed = asyncio.Event()
        self._chats: dict[int, _Chat] = {}
        self._users: dict[int, TgUser] = {}
        self._blocked: set[int] = set()
        self._updates: list[JsonDict] = []
        self._update_ids = itertools.count(100_000_001)
        self._allowed_updates: list[str] = []
        self._poll_generation = 0
        self._polls_waiting = 0
        self._webhook_url = ""
        self._events: dict[int, list[SentMessage]] = {}
        self._cursors: dict[int, int] = {}
        self._query_ids = itertools.count(4_611_686_018_427_387_904 + secrets.randbelow(10**9))
        self._open_queries: set[str] = set()
        self._answers: list[JsonDict] = []
        self._calls: list[JsonDict] = []
        self._injected: dict[str, list[_Injected]] = {}
        self._files: dict[str, bytes] = {}
        self._file_counter = itertools.count(1)
        self._commands: dict[tuple[str, str], list[JsonDict]] = {}
        self.internal_errors: list[str] = []
        self._methods: dict[str, tuple[str, Callable[[Params], Any]]] = {
            name.lower(): (name, handler) for name, handler in self._handlers().items()
        }

    def _handlers(self) -> dict[str, Callable[[Params], Any]]:
        return {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "logOut": self._accept,
            "close": self._accept,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "sendChatAction": self._send_chat_action,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> str:
        """Serve on 127.0.0.1 on a free port; return the base URL for aiogram."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        # handler_cancellation: a long poll whose client went away must not linger.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self._closing = False
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    async def stop(self) -> None:
        """Release waiting long polls, shut the server down, report stand-in bugs."""
        self._closing = True
        self._bump()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.internal_errors:
            raise AssertionError("stand-in failed internally:\n" + "\n".join(self.internal_errors))

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ driving users

    def user_says(
        self,
        user: TgUser,
        text: str,
        *,
        chat_id: int | None = None,
        chat_type: str = "private",
        reply_to: SentMessage | IncomingMessage | None = None,
        chat_title: str | None = None,
    ) -> IncomingMessage:
        """Queue a Message update: ``user`` typed ``text`` (in private, or in a group)."""
        if not text or _utf16_len(text) > TEXT_LIMIT:
            raise ValueError("a Telegram client sends 1-4096 characters")
        chat = self._ensure_chat(user, chat_id, chat_type, chat_title)
        self._users[user.id] = user
        if chat.type == "private":
            self._blocked.discard(user.id)  # writing to a bot unblocks it
        message: JsonDict = {
            "message_id": chat.next_message_id(),
            "from": user.to_api(),
            "chat": chat.to_api(),
            "date": int(time.time()),
            "text": text,
        }
        entities = _incoming_entities(text)
        if entities:
            message["entities"] = entities
        if reply_to is not None:
            message["reply_to_message"] = self._replied_json(chat, reply_to)
        chat.user_messages[message["message_id"]] = message
        if self._delivered(chat, text, reply_to):
            self._queue_update({"message": message})
        return IncomingMessage(chat.id, message["message_id"], user, text)

    def press(self, user: TgUser, message: SentMessage, callback_data: str) -> str:
        """Queue a CallbackQuery update: ``user`` pressed a button of a bot message."""
        chat = self._chats.get(message.chat_id)
        live = chat.bot_messages.get(message.message_id) if chat else None
        if chat is None or live is None:
            raise AssertionError(f"bot message {message.message_id} is gone (deleted?)")
        if chat.type == "private" and user.id != chat.id:
            raise AssertionError(f"user {user.id} cannot see private chat {chat.id}")
        if callback_data not in live.callback_data():
            raise AssertionError(
                f"no button with callback_data {callback_data!r} on {live.describe()}"
            )
        self._users[user.id] = user
        query_id = str(next(self._query_ids))
        self._open_queries.add(query_id)
        query = {
            "id": query_id,
            "from": user.to_api(),
            "message": self._bot_message_json(live),
            "chat_instance": str(-(abs(chat.id) * 7_919 + 104_729)),
            "data": callback_data,
        }
        self._queue_update({"callback_query": query})
        return query_id

    def block(self, user: TgUser) -> None:
        """The user blocks the bot: private sends fail with 403 until they write again."""
        self._blocked.add(user.id)

    def _ensure_chat(
        self, user: TgUser, chat_id: int | None, chat_type: str, title: str | None
    ) -> _Chat:
        if chat_type == "private":
            if chat_id not in (None, user.id):
                raise ValueError("a private chat's id is the user's id")
            chat = self._chats.setdefault(user.id, _Chat(user.id, "private"))
            chat.user = user
            return chat
        if chat_type not in ("group", "supergroup"):
            raise ValueError(f"unsupported chat_type {chat_type!r}")
        if chat_id is None or chat_id >= 0:
            raise ValueError("group chats have negative ids")
        chat = self._chats.setdefault(chat_id, _Chat(chat_id, chat_type, title))
        if chat.type != chat_type:
            raise ValueError(f"chat {chat_id} is a {chat.type}")
        chat.title = title or chat.title
        return chat

    def _delivered(
        self, chat: _Chat, text: str, reply_to: SentMessage | IncomingMessage | None
    ) -> bool:
        """Privacy mode: in groups a bot only gets commands, replies to it and mentions."""
        if chat.type == "private" or not self.privacy_mode:
            return True
        command = re.match(r"/[A-Za-z0-9_]+(?:@(\w+))?", text)
        if command:
            addressee = command.group(1)
            return addressee is None or addressee.lower() == self.bot_username.lower()
        if isinstance(reply_to, SentMessage):
            return True
        return f"@{self.bot_username.lower()}" in text.lower()

    def _queue_update(self, payload: JsonDict) -> None:
        self._updates.append({"update_id": next(self._update_ids), **payload})
        self._bump()

    # ------------------------------------------------------------------ observing the bot

    async def wait_for(
        self,
        chat_id: int,
        predicate: Callable[[SentMessage], bool] | None = None,
        *,
        timeout_s: float = 10.0,
    ) -> SentMessage:
        """The next send or edit in the chat matching ``predicate``, as it was at that moment.

        Each chat has a cursor over its events (sends and edits); a match moves the cursor
        past it, so the same event is never returned twice and later waits see later events.
        """
        problems: list[str] = []

        def next_match() -> SentMessage | None:
            events = self._events.get(chat_id, [])
            for index in range(self._cursors.get(chat_id, 0), len(events)):
                if _matches(predicate, events[index], problems):
                    self._cursors[chat_id] = index + 1
                    return events[index]
            return None

        found = await self._wait_until(next_match, timeout_s)
        if found is None:
            raise AssertionError(self._explain_timeout(chat_id, timeout_s, problems))
        return found

    async def wait_for_answer(self, callback_query_id: str, *, timeout_s: float = 10.0) -> JsonDict:
        """The bot's answerCallbackQuery for that query."""

        def answered() -> JsonDict | None:
            hits = [a for a in self._answers if a["callback_query_id"] == callback_query_id]
            return hits[0] if hits else None

        found = await self._wait_until(answered, timeout_s)
        if found is None:
            raise AssertionError(f"callback query {callback_query_id} unanswered in {timeout_s}s")
        return found

    async def wait_idle(self, *, timeout_s: float = 10.0) -> None:
        """Until the bot has confirmed every queued update and is long-polling again.

        Updates are confirmed by the bot's next getUpdates, so this means they were all
        received; with aiogram's handle_as_tasks it does not prove the handlers finished.
        """

        def idle() -> bool | None:
            return True if not self._updates and self._polls_waiting > 0 else None

        if await self._wait_until(idle, timeout_s) is None:
            raise AssertionError(
                f"bot not idle after {timeout_s}s: {len(self._updates)} updates unconfirmed, "
                f"{self._polls_waiting} getUpdates waiting"
            )

    def messages(self, chat_id: int) -> list[SentMessage]:
        """The bot's messages in that chat in order, current state, deleted ones left out."""
        chat = self._chats.get(chat_id)
        return list(chat.bot_messages.values()) if chat else []

    def transcript(self, chat_id: int) -> list[SentMessage | JsonDict]:
        """Both sides of the chat in the order they were sent (users' and the bot's messages
        share one id sequence per chat): a user's message as its Message JSON, the bot's in
        their current state; deleted ones left out."""
        chat = self._chats.get(chat_id)
        if chat is None:
            return []
        both: dict[int, SentMessage | JsonDict] = {**chat.user_messages, **chat.bot_messages}
        return [both[message_id] for message_id in sorted(both)]

    def callback_answers(self) -> list[JsonDict]:
        return [dict(answer) for answer in self._answers]

    def calls(self, method: str | None = None) -> list[JsonDict]:
        """Every API call received: method, params (decoded where obvious), ok, error."""
        wanted = method.lower() if method else None
        return [dict(c) for c in self._calls if wanted is None or c["method"].lower() == wanted]

    def fail_next(
        self,
        method: str,
        *,
        error_code: int = 429,
        description: str = "Too Many Requests: retry after 1",
        retry_after: int | None = 1,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail with that Bot API error.

        ``retry_after`` is only sent with 429, as Telegram does, so e.g. an injected 403
        surfaces as aiogram's TelegramForbiddenError rather than TelegramRetryAfter.
        """
        if method.lower() not in self._methods:
            raise ValueError(f"{method!r} is not a method this stand-in serves")
        if times < 1:
            raise ValueError("times must be at least 1")
        queued = _Injected(error_code, description, retry_after if error_code == 429 else None)
        self._injected.setdefault(method.lower(), []).extend([queued] * times)

    def commands(self) -> dict[tuple[str, str], list[JsonDict]]:
        """Commands set by the bot, keyed by (scope as JSON, language_code)."""
        return copy.deepcopy(self._commands)

    # ------------------------------------------------------------------ waiting machinery

    def _bump(self) -> None:
        # Wake every waiter: they re-check their condition against the new state.
        woken, self._changed = self._changed, asyncio.Event()
        woken.set()

    async def _wait_until(self, check: Callable[[], _T | None], timeout_s: float) -> _T | None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            changed = self._changed  # taken before checking, so no change is missed
            result = check()
            remaining = deadline - asyncio.get_running_loop().time()
            if result is not None or remaining <= 0:
                return result
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                pass  # one last check above, then give up

    def _explain_timeout(self, chat_id: int, timeout_s: float, problems: list[str]) -> str:
        events = self._events.get(chat_id, [])
        cursor = self._cursors.get(chat_id, 0)
        lines = [f"no matching bot message in chat {chat_id} within {timeout_s}s"]
        lines.append(f"events in this chat (cursor at #{cursor}):")
        lines += [f"  #{i} {event.describe()}" for i, event in enumerate(events)] or ["  none"]
        failed = [
            f"  {c['method']}: {c['error']}"
            for c in self._calls
            if not c["ok"] and c["params"].get("chat_id") in (chat_id, str(chat_id))
        ]
        if failed:
            lines += ["failed Bot API calls for this chat:", *failed]
        lines += [f"predicate raised: {problem}" for problem in dict.fromkeys(problems)]
        lines += [f"stand-in internal error: {error}" for error in self.internal_errors]
        return "\n".join(lines)

    # ------------------------------------------------------------------ HTTP layer

    async def _not_found(self, request: web.Request) -> web.Response:
        return web.json_response(BotApiError(404, "Not Found").payload(), status=404)

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["method"]
        call: JsonDict = {"method": name, "params": {}, "ok": False, "error": None}
        self._calls.append(call)
        try:
            result = await self._dispatch(request, name, call)
        except BotApiError as exc:
            call["error"] = exc.description
            return web.json_response(exc.payload(), status=exc.error_code)
        except Exception as exc:  # a bug in the stand-in, not in the bot: make it loud
            self.internal_errors.append(f"{name}: {exc!r}")
            failure = BotApiError(500, f"Internal Server Error: {exc!r}")
            return web.json_response(failure.payload(), status=500)
        call["ok"] = True
        return web.json_response({"ok": True, "result": result})

    async def _dispatch(self, request: web.Request, name: str, call: JsonDict) -> Any:
        if request.match_info["token"] != self.token:
            raise BotApiError(401, "Unauthorized")
        entry = self._methods.get(name.lower())  # method names are case-insensitive
        if entry is None:
            raise BotApiError(404, "Not Found")
        call["method"], handler = entry
        params = await read_params(request)
        call["params"] = params.snapshot()
        self._raise_injected(call["method"])
        result = handler(params)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    def _raise_injected(self, method: str) -> None:
        queued = self._injected.get(method.lower())
        if queued:
            injected = queued.pop(0)
            raise BotApiError(injected.error_code, injected.description, injected.retry_after)

    # ------------------------------------------------------------------ shared helpers

    def _bot_user(self) -> JsonDict:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def _chat_for(self, params: Params) -> _Chat:
        raw = params.raw("chat_id")
        if raw is None:
            raise bad_request("chat_id is empty")
        if isinstance(raw, bool) or not re.fullmatch(r"-?\d+", str(raw).strip()):
            raise bad_request("chat not found")  # @usernames: no public chats here
        chat_id = int(str(raw).strip())
        chat = self._chats.get(chat_id)
        if chat is None and chat_id in self._users:
            raise BotApiError(403, "Forbidden: bot can't initiate conversation with a user")
        if chat is None:
            raise bad_request("chat not found")
        if chat.type == "private" and chat_id in self._blocked:
            raise BotApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _message_id(self, params: Params) -> int:
        message_id = params.integer("message_id")
        if message_id is None:
            raise bad_request("message identifier is not specified")
        return message_id

    def _reply_target(self, chat: _Chat, params: Params) -> int | None:
        reply = params.json("reply_parameters")
        if reply is not None and not isinstance(reply, dict):
            raise bad_request("can't parse reply_parameters JSON object")
        target = reply.get("message_id") if reply else params.integer("reply_to_message_id")
        if target is None:
            return None
        if target in chat.bot_messages or target in chat.user_messages:
            return int(target)
        lenient = (reply or {}).get("allow_sending_without_reply") or params.boolean(
            "allow_sending_without_reply"
        )
        if lenient:
            return None
        raise bad_request("message to be replied not found")

    def _replied_json(self, chat: _Chat, reply_to: SentMessage | IncomingMessage) -> JsonDict:
        if reply_to.chat_id != chat.id:
            raise ValueError("reply_to must be a message of the same chat")
        replied = self._stored_json(chat, reply_to.message_id)
        if replied is None:
            raise ValueError(f"message {reply_to.message_id} is not in chat {chat.id}")
        return replied

    def _stored_json(self, chat: _Chat, message_id: int) -> JsonDict | None:
        """A message of the chat as Telegram nests it in reply_to_message (no deeper nesting)."""
        if message_id in chat.bot_messages:
            return self._bot_message_json(chat.bot_messages[message_id], nested=False)
        stored = chat.user_messages.get(message_id)
        if stored is None:
            return None
        return {key: value for key, value in stored.items() if key != "reply_to_message"}

    def _bot_message_json(self, message: SentMessage, *, nested: bool = True) -> JsonDict:
        chat = self._chats[message.chat_id]
        data: JsonDict = {
            "message_id": message.message_id,
            "from": self._bot_user(),
            "chat": chat.to_api(),
            "date": message.date,
        }
        if message.edit_date is not None:
            data["edit_date"] = message.edit_date
        if message.text is not None:
            data["text"] = message.text
            if message.entities:
                data["entities"] = message.entities
        if message.photo_sizes:
            data["photo"] = message.photo_sizes
            if message.caption:
                data["caption"] = message.caption
                if message.entities:
                    data["caption_entities"] = message.entities
        if message.document is not None:
            data["document"] = {
                "file_id": f"BQACAgIAAxkDAAI{message.message_id:08d}",
                "file_unique_id": f"AgAD{message.message_id:08d}",
                "file_name": message.document_name or "document",
                "file_size": len(message.document),
            }
            if message.caption:
                data["caption"] = message.caption
                if message.entities:
                    data["caption_entities"] = message.entities
        if message.reply_markup and "inline_keyboard" in message.reply_markup:
            data["reply_markup"] = message.reply_markup  # only inline keyboards are echoed
        if nested and message.reply_to_message_id is not None:
            replied = self._stored_json(chat, message.reply_to_message_id)
            if replied is not None:  # a deleted original simply disappears
                data["reply_to_message"] = replied
        return data

    def _store(self, chat: _Chat, message: SentMessage) -> SentMessage:
        chat.bot_messages[message.message_id] = message
        self._record_event(message)
        return message

    def _record_event(self, message: SentMessage) -> None:
        # A snapshot, so an event keeps showing the message as it was at that moment.
        self._events.setdefault(message.chat_id, []).append(copy.deepcopy(message))
        self._bump()

    def _caption(self, params: Params) -> FormattedText:
        raw = params.string("caption") or ""
        caption = format_text(raw, params.string("parse_mode"), params.json("caption_entities"))
        if _utf16_len(caption.text) > CAPTION_LIMIT:
            raise bad_request("message caption is too long")
        return caption

    def _message_text(self, params: Params) -> FormattedText:
        raw = params.string("text")
        if raw is None:
            raise bad_request("message text is empty")
        text = format_text(raw, params.string("parse_mode"), params.json("entities"))
        if not text.text:
            raise bad_request("message text is empty")
        if _utf16_len(text.text) > TEXT_LIMIT:
            raise bad_request("message is too long")
        return text

    # ------------------------------------------------------------------ methods: bot & updates

    def _get_me(self, params: Params) -> JsonDict:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _accept(self, params: Params) -> bool:
        return True

    async def _get_updates(self, params: Params) -> list[JsonDict]:
        if self._webhook_url:
            raise BotApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        limit = min(max(params.integer("limit") or 100, 1), 100)
        timeout = max(params.integer("timeout") or 0, 0)
        allowed = params.json("allowed_updates")
        if allowed is not None:
            if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
                raise bad_request("can't parse allowed_updates JSON object")
            self._allowed_updates = allowed  # remembered, as Telegram does
        self._confirm(params.integer("offset") or 0)
        # A newer getUpdates terminates an older one still waiting (two bot instances).
        self._poll_generation += 1
        generation = self._poll_generation
        self._polls_waiting += 1
        self._bump()
        try:
            batch = await self._wait_until(lambda: self._poll(generation, limit), timeout)
        finally:
            self._polls_waiting -= 1
        return batch or []

    def _confirm(self, offset: int) -> None:
        before = len(self._updates)
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        if len(self._updates) != before:
            self._bump()

    def _poll(self, generation: int, limit: int) -> list[JsonDict] | None:
        if generation != self._poll_generation:
            raise BotApiError(
                409,
                "Conflict: terminated by other getUpdates request; "
                "make sure that only one bot instance is running",
            )
        if self._closing:
            return []
        # Telegram does not keep updates of types the bot did not ask for.
        self._updates = [u for u in self._updates if self._wanted(u)]
        return self._updates[:limit] or None

    def _wanted(self, update: JsonDict) -> bool:
        kind = next(key for key in update if key != "update_id")
        if self._allowed_updates:
            return kind in self._allowed_updates
        return kind not in _OPT_IN_UPDATES

    def _set_webhook(self, params: Params) -> bool:
        self._webhook_url = params.string("url") or ""
        if params.boolean("drop_pending_updates"):
            self._updates.clear()
        return True

    def _delete_webhook(self, params: Params) -> bool:
        self._webhook_url = ""
        if params.boolean("drop_pending_updates"):
            self._updates.clear()
        return True

    def _get_webhook_info(self, params: Params) -> JsonDict:
        info: JsonDict = {
            "url": self._webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self._webhook_url and self._allowed_updates:
            info["allowed_updates"] = self._allowed_updates
        return info

    # ------------------------------------------------------------------ methods: messages

    def _send_message(self, params: Params) -> JsonDict:
        chat = self._chat_for(params)
        text = self._message_text(params)
        markup = parse_reply_markup(params.raw("reply_markup"))
        reply_to = self._reply_target(chat, params)
        message = SentMessage(
            chat_id=chat.id,
            message_id=chat.next_message_id(),
            text=text.text,
            caption=None,
            photo=None,
            reply_markup=markup,
            parse_mode=params.string("parse_mode"),
            reply_to_message_id=reply_to,
            method="sendMessage",
            raw_text=params.string("text"),
            entities=text.entities,
            date=int(time.time()),
        )
        return self._bot_message_json(self._store(chat, message))

    def _send_photo(self, params: Params) -> JsonDict:
        chat = self._chat_for(params)
        photo = self._photo_bytes(params.file("photo"))
        caption = self._caption(params)
        markup = parse_reply_markup(params.raw("reply_markup"))
        reply_to = self._reply_target(chat, params)
        message = SentMessage(
            chat_id=chat.id,
            message_id=chat.next_message_id(),
            text=None,
            caption=caption.text or None,
            photo=photo,
            reply_markup=markup,
            parse_mode=params.string("parse_mode"),
            reply_to_message_id=reply_to,
            method="sendPhoto",
            raw_text=params.string("caption"),
            entities=caption.entities,
            photo_sizes=self._photo_sizes(photo),
            date=int(time.time()),
        )
        return self._bot_message_json(self._store(chat, message))

    def _send_document(self, params: Params) -> JsonDict:
        chat = self._chat_for(params)
        document = params.file("document")
        if not isinstance(document, bytes) or not document:
            # An uploaded file only: the bot sends none by file_id or URL.
            raise bad_request("there is no document in the request")
        caption = self._caption(params)
        message = SentMessage(
            chat_id=chat.id,
            message_id=chat.next_message_id(),
            text=None,
            caption=caption.text or None,
            photo=None,
            reply_markup=parse_reply_markup(params.raw("reply_markup")),
            parse_mode=params.string("parse_mode"),
            reply_to_message_id=self._reply_target(chat, params),
            method="sendDocument",
            raw_text=params.string("caption"),
            entities=caption.entities,
            date=int(time.time()),
            document=document,
            document_name=params.file_name("document"),
        )
        return self._bot_message_json(self._store(chat, message))

    def _photo_bytes(self, photo: bytes | str | None) -> bytes:
        if photo is None:
            raise bad_request("there is no photo in the request")
        if isinstance(photo, str):
            if photo.startswith(("http://", "https://")):
                # Telegram would download it; this stand-in never goes online.
                raise bad_request("failed to get HTTP URL content")
            known = self._files.get(photo)
            if known is None:
                raise bad_request("wrong file identifier/HTTP URL specified")
            return known
        size = image_size(photo)
        if size is None:
            raise bad_request("IMAGE_PROCESS_FAILED")
        width, height = size
        if width + height > 10_000 or max(width, height) > 20 * max(min(width, height), 1):
            raise bad_request("PHOTO_INVALID_DIMENSIONS")
        return photo

    def _photo_sizes(self, photo: bytes) -> list[JsonDict]:
        """Telegram stores a photo in several sizes, the largest last."""
        width, height = image_size(photo) or (1, 1)
        unique = f"AQAD{next(self._file_counter):08d}"
        boxes = [box for box in (90, 320, 800) if max(width, height) > box] + [1280]
        sizes: list[JsonDict] = []
        for box in boxes:
            width_px, height_px = _scaled(width, height, box)
            file_id = f"AgACAgIAAxkDAAI{secrets.token_urlsafe(24)}"
            self._files[file_id] = photo  # so the bot can resend it by file_id
            size: JsonDict = {
                "file_id": file_id,
                "file_unique_id": f"{unique}{box}",
                "width": width_px,
                "height": height_px,
            }
            if box == boxes[-1]:
                size["file_size"] = len(photo)
            sizes.append(size)
        return sizes

    def _editable(self, params: Params) -> tuple[_Chat, SentMessage]:
        if params.raw("inline_message_id") is not None:
            raise bad_request("MESSAGE_ID_INVALID")  # no inline mode here
        chat = self._chat_for(params)
        message_id = self._message_id(params)
        if message_id in chat.user_messages:
            raise bad_request("message can't be edited")
        message = chat.bot_messages.get(message_id)
        if message is None:
            raise bad_request("message to edit not found")
        return chat, message

    def _apply_edit(self, message: SentMessage, method: str) -> JsonDict:
        message.method = method
        message.edit_date = int(time.time())
        self._record_event(message)
        return self._bot_message_json(message)

    def _edit_message_text(self, params: Params) -> JsonDict:
        _, message = self._editable(params)
        if message.text is None:
            raise bad_request("there is no text in the message to edit")
        text = self._message_text(params)
        # Without reply_markup an edit removes the inline keyboard, as on Telegram.
        markup = parse_reply_markup(params.raw("reply_markup"), inline_only=True)
        unchanged = (text.text, text.entities, markup)
        if unchanged == (message.text, message.entities, message.reply_markup):
            raise bad_request(_NOT_MODIFIED)
        message.edits.append(message.text)
        message.text, message.entities, message.reply_markup = text.text, text.entities, markup
        message.raw_text = params.string("text")
        message.parse_mode = params.string("parse_mode")
        return self._apply_edit(message, "editMessageText")

    def _edit_message_caption(self, params: Params) -> JsonDict:
        _, message = self._editable(params)
        if message.photo is None:
            raise bad_request("there is no caption in the message to edit")
        caption = self._caption(params)
        markup = parse_reply_markup(params.raw("reply_markup"), inline_only=True)
        new = (caption.text or None, caption.entities, markup)
        if new == (message.caption, message.entities, message.reply_markup):
            raise bad_request(_NOT_MODIFIED)
        message.edits.append(message.caption or "")
        message.caption, message.entities, message.reply_markup = new
        message.raw_text = params.string("caption")
        message.parse_mode = params.string("parse_mode")
        return self._apply_edit(message, "editMessageCaption")

    def _edit_message_reply_markup(self, params: Params) -> JsonDict:
        _, message = self._editable(params)
        markup = parse_reply_markup(params.raw("reply_markup"), inline_only=True)
        if markup == message.reply_markup:
            raise bad_request(_NOT_MODIFIED)
        message.reply_markup = markup
        return self._apply_edit(message, "editMessageReplyMarkup")

    def _delete_message(self, params: Params) -> bool:
        chat = self._chat_for(params)
        message_id = self._message_id(params)
        if chat.user_messages.pop(message_id, None) is not None:
            return True  # bots may delete incoming messages
        message = chat.bot_messages.pop(message_id, None)
        if message is None:
            raise bad_request("message to delete not found")
        message.deleted = True
        return True

    def _answer_callback_query(self, params: Params) -> bool:
        query_id = params.string("callback_query_id")
        if query_id is None or query_id not in self._open_queries:
            raise bad_request(_QUERY_INVALID)
        text = params.string("text")
        if text is not None and _utf16_len(text) > CALLBACK_ANSWER_LIMIT:
            raise bad_request("MESSAGE_TOO_LONG")
        self._open_queries.discard(query_id)  # a query can be answered once
        self._answers.append(
            {
                "callback_query_id": query_id,
                "text": text,
                "show_alert": params.boolean("show_alert"),
                "url": params.string("url"),
                "cache_time": params.integer("cache_time"),
            }
        )
        self._bump()
        return True

    def _send_chat_action(self, params: Params) -> bool:
        self._chat_for(params)
        if params.string("action") not in _CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    # ------------------------------------------------------------------ methods: commands

    def _commands_key(self, params: Params) -> tuple[str, str]:
        scope = params.json("scope") or {"type": "default"}
        if not isinstance(scope, dict) or scope.get("type") not in _COMMAND_SCOPES:
            raise bad_request("can't parse BotCommandScope: wrong scope type")
        if scope.get("type") in ("chat", "chat_administrators", "chat_member"):
            self._chat_for(Params({"chat_id": scope.get("chat_id")}, {}))
        return json.dumps(scope, sort_keys=True), params.string("language_code") or ""

    def _set_my_commands(self, params: Params) -> bool:
        commands = params.json("commands") or []  # missing means an empty list, as on Telegram
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        if len(commands) > 100:
            raise bad_request("too many commands specified")
        for command in commands:
            _check_command(command)
        self._commands[self._commands_key(params)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    def _get_my_commands(self, params: Params) -> list[JsonDict]:
        return list(self._commands.get(self._commands_key(params), []))

    def _delete_my_commands(self, params: Params) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True


def _check_command(command: Any) -> None:
    if not isinstance(command, dict):
        raise bad_request("can't parse BotCommand: expected an Object")
    for name in ("command", "description"):
        if not isinstance(command.get(name), str):
            raise bad_request(f"can't parse BotCommand: Can't find field \"{name}\"")
    if not re.fullmatch(r"[a-z0-9_]{1,32}", command["command"]):
        raise bad_request("BOT_COMMAND_INVALID")
    if not command["description"].strip():
        raise bad_request("command description must be non-empty")
    if len(command["description"]) > 256:
        raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")


def _matches(
    predicate: Callable[[SentMessage], bool] | None, event: SentMessage, problems: list[str]
) -> bool:
    if predicate is None:
        return True
    try:
        return bool(predicate(event))
    except Exception as exc:
        # e.g. `"x" in m.text` on a photo: that event does not match; say so on timeout.
        problems.append(f"{exc!r} on {event.describe()}")
        return False
