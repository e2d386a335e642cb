"""`vnode proofs publish | key | verify FILE`: proofs of liabilities (docs/PROOFS.md). `publish`
takes an epoch of every asset now, as the worker does on its schedule; `key` prints the proof
key; `verify` checks a user's proof file with the reference verifier (vnode/proofs/verifier.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vnode.cli_db import DataDir, command_settings, master_seed, with_pool
from vnode.keys import SoftwareSigner
from vnode.proofs.publish import publish_all
from vnode.proofs.verifier import ProofError, verify_proof
from vnode.settings import Settings

proofs_app = typer.Typer(
    help="Proofs of liabilities: publish an epoch, print the proof key, verify a proof.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)


def _signer(settings: Settings) -> SoftwareSigner:
    return SoftwareSigner(master_seed(settings))


@proofs_app.command("publish")
def publish(data_dir: DataDir = None) -> None:
    """Publish an epoch of every asset from one snapshot taken now."""
    settings = command_settings(data_dir)
    signer = _signer(settings)
    published = with_pool(settings, lambda pool: publish_all(pool, signer))
    if not published:
        err.print("[yellow]another process is publishing an epoch; try again shortly[/]")
        raise typer.Exit(1)
    for epoch in published:
        s = epoch.statement
        out.print(
            f"{s['asset_id']} epoch {s['epoch']}: total {s['total']} over {s['leaves']} leaves, "
            f"ledger position {s['ledger_position']}, root {s['root']}"
        )


@proofs_app.command("key")
def key(data_dir: DataDir = None) -> None:
    """Print the operator's proof key (x-only, hex): what users check statements against."""
    out.print(_signer(command_settings(data_dir)).proof_pubkey(), soft_wrap=True)


@proofs_app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="a proof file (POST /virtual_proof's answer)")],
    pubkey: Annotated[
        str | None,
        typer.Option(help="the operator's proof key (x-only hex); default: this seed's"),
    ] = None,
    balance: Annotated[
        int | None, typer.Option(help="the balance you expect, in base units (msat for BTC)")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Check a proof: path, sums, non-negativity, root, signature and, with --balance, the
    balance. Exit 0 when verified, 1 when not, 2 when the file cannot be read."""
    try:
        proof = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        err.print(f"[red]cannot read {file}: {exc}[/]")
        raise typer.Exit(2) from None
    if pubkey is None:
        settings = command_settings(data_dir)
        if settings.master_seed is None and not settings.seed_path.exists():
            # Never create a seed here: a user checking a proof has none.
            err.print("[red]no master seed here: give the operator's key with --pubkey[/]")
            raise typer.Exit(2)
        pubkey = _signer(settings).proof_pubkey()
    try:
        statement = verify_proof(proof, pubkey, balance)
    except ProofError as exc:
        out.print(f"[red]NOT VERIFIED: {exc}[/]")
        raise typer.Exit(1) from None
    out.print(
        f"[green]verified[/]: balance {proof['balance']} of user {proof['user_id']} is counted "
        f"in the total {statement['total']} of {statement['asset_id']}, epoch "
        f"{statement['epoch']} (ledger position {statement['ledger_position']})"
    )
