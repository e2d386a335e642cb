"""Key derivation for virtual nodes (BIP32 from the service master seed)."""

from vnode.keys.bip32 import (
    ExtendedKey,
    InvalidKeyError,
    derive_child,
    derive_path,
    master_from_seed,
)
from vnode.keys.seed import SeedFileError, load_or_create_seed
from vnode.keys.signer import VNODE_PURPOSE, Signer, SoftwareSigner, user_path

__all__ = [
    "VNODE_PURPOSE",
    "ExtendedKey",
    "InvalidKeyError",
    "SeedFileError",
    "Signer",
    "SoftwareSigner",
    "derive_child",
    "derive_path",
    "load_or_create_seed",
    "master_from_seed",
    "user_path",
]
