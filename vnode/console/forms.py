"""Reading a console form: application/x-www-form-urlencoded only, bounded, one value a name.

Parsed here rather than by python-multipart: the console's forms are a handful of short text
fields, and the body is already capped by api/body_limit (64 KiB)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from fastapi import Request

FORM_TYPE = "application/x-www-form-urlencoded"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_FIELDS = 40


class FormError(ValueError):
    """A body that is not a console form: answered 400 (415 for another content type)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def read_form(request: Request) -> dict[str, str]:
    """The form's fields (read once per request and kept on it)."""
    cached = getattr(request.state, "console_form", None)
    if isinstance(cached, dict):
        return cached
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM_TYPE:
        raise FormError(f"send the form as {FORM_TYPE}", 415)
    body = await request.body()
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError("the form could not be read") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise FormError(f"the field {name!r} is given twice")
        # No console field is more than one line of text; a NUL would not even fit a
        # PostgreSQL text (found by test_hostile_values_in_every_field_are_4xx_never_500).
        if _CONTROL.search(name) or _CONTROL.search(value):
            raise FormError(f"the field {name[:40]!r} holds a control character")
        form[name] = value
    request.state.console_form = form
    return form
