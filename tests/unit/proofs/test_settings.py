"""The proofs' settings (vnode/settings.py, docs/PROOFS.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vnode.settings import Settings


def test_trees_are_kept_at_least_until_the_next_epoch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="VNODE_PROOFS_RETENTION_S"):
        Settings(data_dir=tmp_path, proofs_interval_s=7200, proofs_retention_s=3600)
    Settings(data_dir=tmp_path, proofs_interval_s=0, proofs_retention_s=60)  # schedule off
    assert Settings(data_dir=tmp_path).proofs_interval_s == 3600
