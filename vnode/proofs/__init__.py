"""Proofs of liabilities (issue 16, docs/PROOFS.md): the Merkle sum tree of every user's balance
per asset (`tree`), publishing signed epochs (`publish`), reading them and users' inclusion
proofs and signed balance statements (`store`), and the reference verifier (`verifier`), which
imports only the standard library and coincurve. This file imports nothing, so the verifier can
be loaded without the rest of vnode."""
