"""Logs: one JSON object per line for machines, a readable line for a person at a terminal.

Either form carries the request id of the request a line is about and the fields passed with
`extra=`. `VNODE_LOG_FORMAT` chooses: `json`, `text`, or `auto` (the default: text when stderr
is a terminal, JSON otherwise, so a service under a supervisor or in a container logs JSON).

Nothing here logs headers or bodies, so API keys and seeds cannot reach the log through it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Hashable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, TextIO

import orjson

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

LogFormat = Literal["auto", "json", "text"]

# Attributes every LogRecord has; anything else was passed with extra= and is emitted as a field.
# (uvicorn adds color_message, a copy of the message with terminal colours.)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    """The request id and the extra= fields of a record, in the order they were given."""
    fields: dict[str, object] = {}
    request_id = request_id_var.get()
    if request_id is not None:
        fields["request_id"] = request_id
    for name, value in record.__dict__.items():
        if name not in _STANDARD and not name.startswith("_"):
            fields[name] = value
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


_LEVEL_COLOURS = {"DEBUG": "2", "INFO": "36", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}


def _text_value(value: object) -> str:
    """A field value on one line: bare when it is a plain word, JSON otherwise."""
    if isinstance(value, str):
        if value and not any(c.isspace() or c in "=\"'" for c in value) and value.isprintable():
            return value
        return orjson.dumps(value).decode()
    if isinstance(value, bool | int | float) or value is None:
        return orjson.dumps(value).decode()
    return orjson.dumps(value, default=str).decode()


class TextFormatter(logging.Formatter):
    """`10:00:00.123 INFO     vnode.app: migrations applied  migrations=["0001_init"]`:
    local time, level, logger, message, then the fields as key=value, one record per line
    (a traceback follows on its own lines)."""

    def __init__(self, *, colour: bool = False) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        level = f"{record.levelname:<8}"
        if self.colour:
            code = _LEVEL_COLOURS.get(record.levelname, "0")
            level = f"\033[{code}m{level}\033[0m"
            at = f"\033[2m{at}\033[0m"
        # Messages are ours, but their arguments may carry a node's or a user's text: one
        # record stays one line.
        message = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        line = f"{at} {level} {record.name}: {message}"
        fields = " ".join(f"{key}={_text_value(value)}" for key, value in _fields(record).items())
        if fields:
            line += "  " + (f"\033[2m{fields}\033[0m" if self.colour else fields)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def resolve_format(log_format: str, stream: TextIO) -> Literal["json", "text"]:
    """`auto` is text on a terminal and JSON anywhere else (a file, a pipe, a collector)."""
    if log_format == "json":
        return "json"
    if log_format == "text":
        return "text"
    if log_format != "auto":
        raise ValueError(f"log format must be auto, json or text, not {log_format!r}")
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # closed or not a real stream
        return "json"


def make_formatter(log_format: str, stream: TextIO) -> logging.Formatter:
    if resolve_format(log_format, stream) == "json":
        return JsonFormatter()
    return TextFormatter(colour=not os.environ.get("NO_COLOR") and stream.isatty())


def configure_logging(
    level: str, log_format: str | None = None, stream: TextIO | None = None
) -> None:
    """Log records at `level` and above to stderr in `log_format` (auto, json or text).

    `log_format` None reads VNODE_LOG_FORMAT (default auto), so processes that do not hold the
    settings (uvicorn's worker processes, the bot) follow the same choice."""
    target = sys.stderr if stream is None else stream
    chosen = log_format if log_format is not None else os.environ.get("VNODE_LOG_FORMAT", "auto")
    handler = logging.StreamHandler(target)
    handler.setFormatter(make_formatter(chosen.strip().lower(), target))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log would duplicate ours, without request ids.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request at INFO: with the node polled every second that is a line per
    # poll. Its requests show at DEBUG; what they mean is logged by our own code.
    quiet = max(root.level, logging.WARNING) if root.level > logging.DEBUG else logging.DEBUG
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)


class LogOnChange:
    """Logs a line about a thing only when its state differs from the last one logged for it,
    so a loop that polls every second says "unreachable" once, not once per pass.

        self._said = LogOnChange(log)
        self._said.log(payment_hash, "unavailable", logging.INFO, "payment status unavailable")
        ...
        self._said.forget(payment_hash)  # resolved: the next change is logged again

    Keys are bounded (`max_keys`): past that the oldest is forgotten, and at worst its next
    line is logged once more."""

    def __init__(self, logger: logging.Logger, max_keys: int = 10_000) -> None:
        self.logger = logger
        self.max_keys = max_keys
        self._last: dict[Hashable, Hashable] = {}

    def log(
        self,
        key: Hashable,
        state: Hashable,
        level: int,
        msg: str,
        *args: object,
        extra: dict[str, object] | None = None,
    ) -> bool:
        """Log unless `state` is the last state logged for `key`; True when logged."""
        if key in self._last and self._last[key] == state:
            return False
        self._last.pop(key, None)
        self._last[key] = state
        if len(self._last) > self.max_keys:
            del self._last[next(iter(self._last))]
        self.logger.log(level, msg, *args, extra=extra)
        return True

    def forget(self, key: Hashable) -> None:
        self._last.pop(key, None)
