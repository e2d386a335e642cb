"""Log lines: text on a terminal, JSON elsewhere or when asked; one record is one line."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from typing import TextIO

import orjson
import pytest
from pydantic import ValidationError

from vnode.logs import (
    JsonFormatter,
    LogOnChange,
    TextFormatter,
    configure_logging,
    make_formatter,
    request_id_var,
    resolve_format,
)
from vnode.settings import Settings


@pytest.fixture
def terminal() -> Iterator[TextIO]:
    """The writing end of a real pseudo-terminal, as stderr is under `make run`."""
    primary, secondary = os.openpty()
    stream = os.fdopen(secondary, "w")
    try:
        yield stream
    finally:
        stream.close()
        os.close(primary)


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging changes the root logger: put it back after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def record(msg: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord(
        "vnode.test", logging.WARNING, __file__, 1, msg, args or ("you",), None
    )
    made.__dict__.update(extra)
    return made


def test_auto_is_text_on_a_terminal_and_json_elsewhere(terminal: TextIO) -> None:
    assert resolve_format("auto", terminal) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert isinstance(make_formatter("auto", terminal), TextFormatter)
    assert isinstance(make_formatter("auto", io.StringIO()), JsonFormatter)


def test_the_setting_overrides_the_terminal(terminal: TextIO) -> None:
    assert resolve_format("json", terminal) == "json"
    assert resolve_format("text", io.StringIO()) == "text"
    with pytest.raises(ValueError, match="auto, json or text"):
        resolve_format("xml", io.StringIO())


def test_setting_accepts_only_the_three_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VNODE_LOG_FORMAT", "json")
    assert Settings().log_format == "json"
    assert Settings(log_format="text").log_format == "text"
    monkeypatch.setenv("VNODE_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.usefixtures("root_logging")
def test_configure_logging_reads_vnode_log_format_when_not_given(
    monkeypatch: pytest.MonkeyPatch, terminal: TextIO
) -> None:
    # uvicorn's worker processes and the bot configure logging without the setting.
    monkeypatch.setenv("VNODE_LOG_FORMAT", "json")
    configure_logging("INFO", stream=terminal)
    assert isinstance(logging.getLogger().handlers[0].formatter, JsonFormatter)
    monkeypatch.delenv("VNODE_LOG_FORMAT")
    configure_logging("INFO", stream=terminal)
    assert isinstance(logging.getLogger().handlers[0].formatter, TextFormatter)
    configure_logging("INFO", "json", stream=terminal)
    assert isinstance(logging.getLogger().handlers[0].formatter, JsonFormatter)


@pytest.mark.usefixtures("root_logging")
def test_no_line_per_node_request() -> None:
    """httpx logs each request at INFO; with the node polled every second, only at DEBUG."""
    configure_logging("INFO", stream=io.StringIO())
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
    configure_logging("DEBUG", stream=io.StringIO())
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)
    configure_logging("INFO", stream=io.StringIO())


@pytest.mark.usefixtures("root_logging")
def test_json_lines_stay_json() -> None:
    """Whatever the message and fields hold, each record is one line that parses as JSON."""
    out = io.StringIO()
    configure_logging("INFO", "auto", stream=out)  # not a terminal: JSON
    log = logging.getLogger("vnode.test")
    token = request_id_var.set("req-1")
    try:
        log.info(
            'two\nlines "quoted"',
            extra={"payment_hash": "ab" * 32, "n": 3, "nested": {"a": [1, 2]}, "obj": object()},
        )
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
    finally:
        request_id_var.reset(token)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (orjson.loads(line) for line in lines)
    assert first["msg"] == 'two\nlines "quoted"' and first["level"] == "info"
    assert first["logger"] == "vnode.test" and first["request_id"] == "req-1"
    assert first["payment_hash"] == "ab" * 32 and first["n"] == 3
    assert first["nested"] == {"a": [1, 2]} and first["obj"].startswith("<object")
    assert "RuntimeError: boom" in second["exc"]


def test_text_line_has_time_level_logger_message_and_fields() -> None:
    line = TextFormatter().format(
        record(worker="reconciler", retry_in_s=0.5, detail="connection refused", empty="")
    )
    assert line.split(" ", 1)[0].count(":") == 2  # HH:MM:SS.mmm
    assert " WARNING  vnode.test: hello you  " in line
    assert 'worker=reconciler retry_in_s=0.5 detail="connection refused" empty=""' in line
    assert "\033[" not in line  # colour only on a terminal


def test_text_record_stays_on_one_line() -> None:
    line = TextFormatter().format(record("node said %s", "a\nb\r", why="x\ny"))
    assert "\n" not in line
    assert "node said a\\nb\\r" in line and 'why="x\\ny"' in line


def test_text_colours_on_a_terminal(terminal: TextIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    formatter = make_formatter("text", terminal)
    assert isinstance(formatter, TextFormatter) and formatter.colour
    assert "\033[33mWARNING" in formatter.format(record())
    monkeypatch.setenv("NO_COLOR", "1")
    plain = make_formatter("text", terminal)
    assert isinstance(plain, TextFormatter) and not plain.colour


def test_log_on_change_says_each_state_once(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("vnode.test.change")
    said = LogOnChange(log, max_keys=2)
    with caplog.at_level(logging.INFO, logger="vnode.test.change"):
        for _ in range(5):  # five polls, one state
            said.log(
                "p1",
                "unavailable",
                logging.INFO,
                "payment status unavailable",
                extra={"payment_hash": "p1"},
            )
        assert said.log("p1", "unreachable", logging.INFO, "node %s", "unreachable")
        assert not said.log("p1", "unreachable", logging.INFO, "node %s", "unreachable")
        said.forget("p1")
        assert said.log("p1", "unreachable", logging.INFO, "node %s", "unreachable")
        # Bounded: the oldest key is forgotten, and at worst logged once more.
        said.log("p2", "x", logging.INFO, "p2")
        said.log("p3", "x", logging.INFO, "p3")
        assert said.log("p1", "unreachable", logging.INFO, "node %s", "unreachable")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "payment status unavailable",
        "node unreachable",
        "node unreachable",
        "p2",
        "p3",
        "node unreachable",
    ]
    assert caplog.records[0].__dict__["payment_hash"] == "p1"
