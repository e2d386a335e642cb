"""`vnode sim serve` and `python -m vnode_sim` are one command: the same options and defaults,
defined once in vnode_sim/cli.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from vnode.cli import app as vnode_app
from vnode_sim import cli as sim_cli
from vnode_sim.config import SimConfig


@pytest.fixture(autouse=True)
def _keep_test_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    # `vnode sim serve` sets up vnode's logging for the process: not this test process's.
    monkeypatch.setattr("vnode.cli.configure_logging", lambda level: None)


def _options(help_text: str) -> list[str]:
    return sorted(set(re.findall(r"--[a-z][a-z0-9-]*", help_text)))


def test_both_commands_show_the_same_options() -> None:
    runner = CliRunner()
    mounted = runner.invoke(vnode_app, ["sim", "serve", "--help"], terminal_width=200)
    own = runner.invoke(sim_cli.app, ["--help"], terminal_width=200)
    assert mounted.exit_code == own.exit_code == 0, (mounted.output, own.output)
    assert "vnode sim serve" in mounted.output
    assert (
        _options(mounted.output)
        == _options(own.output)
        == [
            "--btc-outbound-msat",
            "--hang-s",
            "--help",
            "--host",
            "--network",
            "--port",
            "--rgb-asset",
            "--seed",
            "--settle-delay-s",
        ]
    )


def test_python_dash_m_runs_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vnode_sim", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert "python -m vnode_sim" in done.stdout and "--hang-s" in done.stdout


@pytest.mark.parametrize(
    "args", [["--rgb-asset", "rgb:nope=5"], ["--network", "moon"], ["--seed", "not hex"]]
)
def test_bad_options_are_refused_before_serving(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[SimConfig | None] = []
    monkeypatch.setattr(sim_cli, "serve_sim", lambda host, port, config: served.append(config))
    result = CliRunner().invoke(vnode_app, ["sim", "serve", "--port", "1", *args])
    assert result.exit_code == 2, result.output
    assert served == []


def test_defaults_are_the_sim_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[tuple[str, int, SimConfig | None]] = []
    monkeypatch.setattr(
        sim_cli, "serve_sim", lambda host, port, config: served.append((host, port, config))
    )
    result = CliRunner().invoke(sim_cli.app, ["--port", "3002"])
    assert result.exit_code == 0, result.output
    ((host, port, config),) = served
    assert (host, port) == ("127.0.0.1", 3002) and config is not None
    default = SimConfig()
    assert (
        config.network,
        config.btc_outbound_msat,
        config.settle_delay_s,
        config.request_timeout_hang_s,
    ) == (
        default.network,
        default.btc_outbound_msat,
        default.settle_delay_s,
        default.request_timeout_hang_s,
    )
    assert list(config.rgb_assets.values()) == [sim_cli.DEMO_ASSET_UNITS]
