"""`vnode demo`'s page port: 3003 unless taken, then a free one (said); an asked port must be
free."""

from __future__ import annotations

import socket

import pytest
import typer

from vnode import cli_demo


def test_a_taken_default_port_gives_way_to_a_free_one(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = int(held.getsockname()[1])
        monkeypatch.setattr(cli_demo, "DEFAULT_PORT", taken)
        port = cli_demo._web_port(None)
        assert port != taken and port > 0
        with pytest.raises(typer.Exit):
            cli_demo._web_port(taken)
