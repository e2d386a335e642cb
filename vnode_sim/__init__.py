"""A simulated RGB Lightning Node: the RLN REST API over HTTP, plus a control API (/_sim).

vnode's ``rln`` adapter talks to it exactly as to a real node. Invoices are real BOLT 11,
signed by the node's secp256k1 key; the control API plays the outside world (payers, payees,
on-chain RGB senders) and injects faults. See ``faults.py`` for what each fault does on the
wire, ``invoices.py`` for how RGB fields are encoded.
"""

from vnode_sim.app import create_sim_app, sim_node_of
from vnode_sim.assets import make_asset_id
from vnode_sim.config import SimConfig
from vnode_sim.faults import PaymentFault
from vnode_sim.serve import SimServer, serve_sim
from vnode_sim.state import SimNode

__all__ = [
    "PaymentFault",
    "SimConfig",
    "SimNode",
    "SimServer",
    "create_sim_app",
    "make_asset_id",
    "serve_sim",
    "sim_node_of",
]
