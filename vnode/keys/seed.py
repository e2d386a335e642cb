"""Loading (or first-run creation) of the service master seed."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

SEED_BYTES_ALLOWED = (32, 64)
NEW_SEED_BYTES = 32


class SeedFileError(PermissionError):
    """The seed file exists but is unsafe to use (e.g. readable by others)."""


def parse_seed_hex(value: str, source: str) -> bytes:
    """Decode a hex seed of 32 or 64 bytes. Errors never echo the value."""
    text = value.strip()
    if len(text) not in (2 * n for n in SEED_BYTES_ALLOWED):
        raise ValueError(
            f"{source}: seed must be 64 or 128 hex characters (32 or 64 bytes), "
            f"got {len(text)} characters"
        )
    try:
        return bytes.fromhex(text)
    except ValueError:
        # `from None`: the original message quotes the offending (secret) text.
        raise ValueError(f"{source}: seed is not valid hex") from None


def _read_seed_file(path: Path) -> bytes:
    # O_NOFOLLOW + fstat: check the mode of the very file we read, not a symlink
    # target that could be swapped between stat and open.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SeedFileError(f"seed file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise SeedFileError(
                f"seed file {path} has mode {stat.S_IMODE(st.st_mode):04o}; "
                f"group/other access is refused, run: chmod 600 {path}"
            )
        with os.fdopen(fd, "r", encoding="ascii", closefd=False) as fh:
            text = fh.read()
    finally:
        os.close(fd)
    return parse_seed_hex(text, f"seed file {path}")


def _create_seed_file(path: Path) -> bytes:
    seed = secrets.token_bytes(NEW_SEED_BYTES)
    # O_EXCL: never overwrite an existing seed (losing it loses every node key).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        data = seed.hex().encode("ascii")
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        # A half-written seed would be refused on next start; remove it.
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    os.close(fd)
    return seed


def load_or_create_seed(path: Path, env_value: str | None) -> bytes:
    """Return the master seed.

    Precedence: `env_value` (hex) if given, else the hex file at `path`,
    else a new random 32-byte seed written to `path` with mode 0600.
    """
    if env_value is not None:
        return parse_seed_hex(env_value, "seed from environment")
    if path.exists() or path.is_symlink():
        return _read_seed_file(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        return _create_seed_file(path)
    except FileExistsError:
        # Another process created it between our check and open: use theirs.
        return _read_seed_file(path)
