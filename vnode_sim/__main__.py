"""``python -m vnode_sim``: serve a simulated RGB Lightning Node."""

from __future__ import annotations

import argparse
import json

from vnode_sim.config import NETWORKS, SimConfig
from vnode_sim.serve import serve_sim


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vnode_sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument("--network", choices=NETWORKS, default="regtest")
    parser.add_argument("--seed", help="hex seed for the node's keys (random if absent)")
    parser.add_argument("--btc-outbound-msat", type=int, default=10**12)
    parser.add_argument(
        "--rgb-assets", default="{}", help='JSON object {"rgb:...": units held in its channel}'
    )
    parser.add_argument("--settle-delay-s", type=float, default=0.02)
    args = parser.parse_args(argv)
    config = SimConfig(
        network=args.network,
        node_seed_hex=args.seed,
        btc_outbound_msat=args.btc_outbound_msat,
        rgb_assets=json.loads(args.rgb_assets),
        settle_delay_s=args.settle_delay_s,
    )
    serve_sim(args.host, args.port, config)


if __name__ == "__main__":
    main()
