"""The simulated node's command, defined once: ``python -m vnode_sim`` runs it, and so does
``vnode sim serve`` (vnode/cli.py hands its arguments to :func:`main`, importing this module
only inside that command). Same options, same defaults, either way."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from vnode.lightning.base import Network
from vnode_sim.assets import is_asset_id, make_asset_id
from vnode_sim.config import SimConfig
from vnode_sim.serve import serve_sim

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

# Without --rgb-asset, one demo asset channel, so that RGB works out of the box.
DEMO_ASSET_UNITS = 10**9


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port to listen on")],
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    network: Annotated[Network, typer.Option(help="The node's network")] = Network.REGTEST,
    seed: Annotated[
        str | None, typer.Option(help="Hex seed for the node's keys (random if absent)")
    ] = None,
    btc_outbound_msat: Annotated[
        int, typer.Option(help="BTC the node can send through its channel")
    ] = SimConfig.btc_outbound_msat,
    rgb_asset: Annotated[
        list[str] | None,
        typer.Option(help="rgb:ID=UNITS, an RGB asset channel (repeatable; default: one demo)"),
    ] = None,
    settle_delay_s: Annotated[
        float, typer.Option(help="Outbound payment settle delay")
    ] = SimConfig.settle_delay_s,
    hang_s: Annotated[
        float, typer.Option(help="How long the timeout fault withholds /sendpayment's answer")
    ] = SimConfig.request_timeout_hang_s,
) -> None:
    """Run the simulated RGB Lightning Node alone (the RLN REST API plus /_sim controls)."""
    assets = (
        dict(_parse_asset(text) for text in rgb_asset)
        if rgb_asset
        else {make_asset_id("USDT"): DEMO_ASSET_UNITS}
    )
    try:
        config = SimConfig(
            network=network,
            node_seed_hex=seed,
            btc_outbound_msat=btc_outbound_msat,
            rgb_assets=assets,
            settle_delay_s=settle_delay_s,
            request_timeout_hang_s=hang_s,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not logging.getLogger().handlers:  # `vnode sim serve` has set up vnode's logging
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    typer.echo(
        f"SIMULATED RGB Lightning Node on http://{host}:{port} ({network}); "
        f"RGB assets: {', '.join(assets)}",
        err=True,
    )
    serve_sim(host, port, config)


def _parse_asset(text: str) -> tuple[str, int]:
    asset_id, _, units = text.rpartition("=")
    if not is_asset_id(asset_id) or not units.isdigit():
        raise typer.BadParameter(f"expected rgb:ID=UNITS, got {text!r}")
    return asset_id, int(units)


def main(args: list[str] | None = None, prog_name: str = "python -m vnode_sim") -> None:
    app(args=args, prog_name=prog_name)
