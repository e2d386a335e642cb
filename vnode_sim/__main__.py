"""``python -m vnode_sim``: serve a simulated RGB Lightning Node (the command of cli.py, which
``vnode sim serve`` runs too)."""

from vnode_sim.cli import main

if __name__ == "__main__":
    main()
