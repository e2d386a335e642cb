"""The whole product on the embedded defaults (issue 17): `vnode serve` with nothing configured
publishes its events to the data dir's embedded Redis, and `vnode bot` with only a token (and
the Bot API's URL, here the local stand-in) finds vnode, mints its key, joins the embedded
PostgreSQL and Redis, and polls; both stop cleanly on SIGTERM. Two data dirs run side by side."""

from __future__ import annotations

import asyncio
import signal
import stat
from pathlib import Path

from redis.asyncio import Redis

from harness.processes import VNODE, Process, clean_env
from harness.serve import ServeProcess
from tests.support import new_user_id, wait_until
from vnode.client import VNodeClient
from vnode.datadir import bot_key_file, redis_socket, redis_socket_url
from vnode.demo.bot_api import FakeTelegram, TgUser
from vnode.embedded_redis import answers

TOKEN = "7000000002:" + "E" * 35
STREAM = "vnode:events"
STOP_S = 45.0


def embedded_serve(data_dir: Path) -> ServeProcess:
    """`vnode serve` with no database, Redis or node configured: everything embedded."""
    serve = ServeProcess(data_dir, None, embedded_redis=True, own_group=False)
    serve.start()
    return serve


async def stream_length(data_dir: Path) -> int:
    client = Redis.from_url(redis_socket_url(data_dir))
    try:
        return int(await client.xlen(STREAM))
    finally:
        await client.aclose()


async def credit(serve: ServeProcess, user_id: int, sats: int) -> None:
    async with VNodeClient(serve.url, serve.admin_key) as admin:
        await admin.admin_credit(user_id, amount_msat=sats * 1000, reason="embedded test")


def bot_env(data_dir: Path, telegram: FakeTelegram) -> dict[str, str]:
    """Only the token and the Bot API's URL (plus where the data dir is)."""
    return clean_env(
        {
            "VNODE_BOT_TOKEN": TOKEN,
            "VNODE_BOT_API_URL": telegram.base_url,
            "VNODE_DATA_DIR": str(data_dir),
        }
    )


async def test_serve_and_bot_run_on_the_embedded_defaults(tmp_path: Path) -> None:
    data_dir = tmp_path / "vnode"
    serve = embedded_serve(data_dir)
    telegram = FakeTelegram(TOKEN)
    await telegram.start()
    bot = Process([VNODE, "bot"], tmp_path / "bot.log", env=bot_env(data_dir, telegram))
    try:
        await serve.wait_ready()
        assert answers(redis_socket(data_dir))
        assert stat.S_IMODE(redis_socket(data_dir).parent.stat().st_mode) == 0o700

        # Events reach the embedded Redis.
        await credit(serve, new_user_id(), 1_000)

        async def published() -> bool:
            return await stream_length(data_dir) >= 1

        await wait_until(published, 20, "an event in the embedded Redis stream")

        # `vnode bot --check` says what it found, and that everything answers.
        check = await asyncio.create_subprocess_exec(
            VNODE,
            "bot",
            "--check",
            env=bot_env(data_dir, telegram),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        report = (await asyncio.wait_for(check.communicate(), 60))[0].decode()
        assert check.returncode == 0, report
        assert serve.url in report and str(data_dir / "serve.url") in report
        assert redis_socket_url(data_dir) in report
        assert "minted on the first start" in report and "@bitMaskRGB_bot" in report
        assert TOKEN not in report

        # The bot with only the token: it polls, and answers through vnode.
        bot.start()
        await wait_until(
            lambda: bool(telegram.calls("getUpdates")), 60, "the bot to poll", period_s=0.1
        )
        key_file = bot_key_file(data_dir)
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        alice = TgUser(id=new_user_id(), first_name="Alice", username="alice")
        telegram.user_says(alice, "/start")
        await telegram.wait_for(alice.id, lambda m: "Your virtual node is ready" in (m.text or ""))
        # ...and tells of an event it read from the embedded Redis.
        await credit(serve, alice.id, 2_000)
        await telegram.wait_for(alice.id, lambda m: "embedded test" in (m.text or ""), timeout_s=20)
        assert key_file.read_text().strip() not in bot.log()
        assert TOKEN not in bot.log()
    finally:
        bot_code = bot.stop(signal.SIGTERM, STOP_S)
        serve_code = serve.stop(signal.SIGTERM, STOP_S)
        await telegram.stop()
    assert bot_code == 0, bot.log_tail()
    assert serve_code == 0, serve.log_tail()
    assert not answers(redis_socket(data_dir)), "the embedded Redis outlived vnode serve"
    assert not (data_dir / "serve.url").exists()


async def test_two_data_dirs_run_side_by_side(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    serves = [embedded_serve(first), embedded_serve(second)]
    try:
        await asyncio.gather(*(serve.wait_ready() for serve in serves))
        assert serves[0].port != serves[1].port
        await credit(serves[0], new_user_id(), 1_000)

        async def published() -> bool:
            return await stream_length(first) >= 1

        await wait_until(published, 20, "an event in the first data dir's Redis")
        assert await stream_length(second) == 0, "an event crossed into the other data dir"
    finally:
        # SIGHUP (the terminal went away) stops its Redis as SIGTERM does. (SIGINT and SIGQUIT
        # take the same path, test_stop_signals.py; a shell's background job ignores them.)
        codes = [
            serve.stop(signum, STOP_S)
            for serve, signum in zip(serves, (signal.SIGHUP, signal.SIGTERM), strict=True)
        ]
    assert codes == [0, 0], [serve.log_tail() for serve in serves]
    assert not answers(redis_socket(first)) and not answers(redis_socket(second))
