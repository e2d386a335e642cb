"""Where `vnode bot` finds what is not set (vnode/bot/defaults.py) and the data dir's files it
reads (vnode/datadir.py): an explicit setting always wins; the key file is private and first
writer wins; serve.url lives only while its writer serves."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from redis import Redis

from vnode.bot.defaults import check, redis_url, stored_key, vnode_url
from vnode.bot.settings import DEFAULT_VNODE_URL, BotSettings
from vnode.datadir import bot_key_file, published, serve_url_file, write_private
from vnode.loopback import free_port


@pytest.fixture(autouse=True)
def no_vnode_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's exported VNODE_ settings must not decide these tests."""
    for name in (
        "VNODE_URL",
        "VNODE_REDIS_URL",
        "VNODE_API_KEY",
        "VNODE_DATABASE_URL",
        "VNODE_BOT_TOKEN",
        "VNODE_BOT_API_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def settings(data_dir: Path, **values: str) -> BotSettings:
    return BotSettings(data_dir=data_dir, **values)  # type: ignore[arg-type]


def test_vnode_url_explicit_then_published_then_default(tmp_path: Path) -> None:
    assert vnode_url(settings(tmp_path))[0] == DEFAULT_VNODE_URL
    with published(serve_url_file(tmp_path), "http://127.0.0.1:4101"):
        assert vnode_url(settings(tmp_path)) == (
            "http://127.0.0.1:4101",
            str(serve_url_file(tmp_path)),
        )
        explicit = settings(tmp_path, url="http://127.0.0.1:9")
        assert vnode_url(explicit) == ("http://127.0.0.1:9", "VNODE_URL")
    assert not serve_url_file(tmp_path).exists()


def test_published_file_is_left_to_a_later_writer(tmp_path: Path) -> None:
    path = serve_url_file(tmp_path)
    with published(path, "http://127.0.0.1:1"):
        path.write_text("http://127.0.0.1:2")  # a second vnode serve on the same data dir
    assert path.read_text() == "http://127.0.0.1:2"


def test_redis_url_explicit_wins_over_the_embedded_socket(tmp_path: Path) -> None:
    url, _ = redis_url(settings(tmp_path))
    assert url == f"unix://{(tmp_path / 'redis' / 'redis.sock').resolve()}?db=0"
    odd = tmp_path / "a b%20c"
    client = Redis.from_url(redis_url(settings(odd))[0])  # connects only when used
    assert client.connection_pool.connection_kwargs["path"] == str(odd / "redis" / "redis.sock")
    assert redis_url(settings(tmp_path, redis_url="redis://h:6379/1")) == (
        "redis://h:6379/1",
        "VNODE_REDIS_URL",
    )


def test_key_file_is_private_and_the_first_writer_wins(tmp_path: Path) -> None:
    assert stored_key(tmp_path) is None
    assert write_private(bot_key_file(tmp_path), "vnk_first\n")
    assert not write_private(bot_key_file(tmp_path), "vnk_second\n")
    assert stored_key(tmp_path) == "vnk_first"
    assert stat.S_IMODE(bot_key_file(tmp_path).stat().st_mode) == 0o600


def test_check_names_what_is_missing_without_reaching_anything(tmp_path: Path) -> None:
    """Nothing runs for this data dir: --check says so, part by part, and shows no secret."""
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    found = {f.what: f for f in check(settings(tmp_path, url=url))}
    assert not found["bot token"].ok and "VNODE_BOT_TOKEN" in found["bot token"].source
    assert not found["vnode"].ok and found["vnode"].found == f"{url} (not answering)"
    assert found["API key"].found == "none yet: minted on the first start"
    assert found["PostgreSQL"].found == "embedded cluster, created on the first start"
    assert not found["Redis"].ok and "not answering" in found["Redis"].found
