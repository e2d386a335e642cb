"""What lives in the data directory (default ./.vnode) besides the database, and where: the one
list of those paths, so that `vnode serve`, `vnode bot` and `vnode demo` find each other's
files from the data directory alone."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

# sun_path is 108 bytes on Linux; a Unix socket deeper than this cannot be bound.
MAX_SOCKET_PATH = 100


def redis_dir(data_dir: Path) -> Path:
    """The embedded Redis-compatible server's directory (its append-only file, its log)."""
    return data_dir / "redis"


def redis_socket(data_dir: Path) -> Path:
    """The embedded server's Unix socket: only the data directory's owner reaches it."""
    return redis_dir(data_dir) / "redis.sock"


def redis_socket_url(data_dir: Path) -> str:
    # Quoted: redis-py unquotes the path, so a "%" or a space in a directory name survives.
    return f"unix://{quote(str(redis_socket(data_dir).resolve()))}?db=0"


def serve_url_file(data_dir: Path) -> Path:
    """Where a running `vnode serve` writes its base URL, for the bot to find it."""
    return data_dir / "serve.url"


def bot_key_file(data_dir: Path) -> Path:
    """The bot's `spend` key, minted on its first start (mode 0600, never printed)."""
    return data_dir / "bot_api_key"


def write_private(path: Path, text: str) -> bool:
    """Create `path` with mode 0600 holding `text`; False when it exists already (another
    process wrote it first: O_EXCL makes the first writer win)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


@contextmanager
def published(path: Path, text: str) -> Iterator[None]:
    """`text` in `path` while the block runs; removed after, unless another process has
    replaced it meanwhile (a second `vnode serve` on the same data directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text)
    temporary.replace(path)  # atomic: a reader sees the old URL or the new one, whole
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if path.read_text() == text:
                path.unlink()
