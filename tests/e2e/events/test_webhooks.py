"""Outgoing webhooks with vnode processes: `vnode webhooks` (add, list, rotate, remove, failed,
retry) as a command, and `vnode serve` SIGKILLed while a delivery is in flight, after which the
next process delivers every event, signed. (Webhooks in-process:
tests/integration/events/test_webhooks.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import asyncpg
import httpx

from tests.conftest import TEST_SEED
from tests.integration.api.test_api_transfer import balance, fund
from tests.integration.events.test_webhooks import (
    LOCAL,
    assert_in_order_once,
    deliveries,
    outbox,
    running,
    settings_for,
    subscribe,
    transfer,
)
from tests.integration.events.webhook_receiver import WebhookReceiver
from tests.support import ADMIN_KEY, VNODE, ServeProcess, bearer, new_user_id, wait_until
from vnode.events import endpoints
from vnode.events.delivery import deliver_once
from vnode.events.dispatcher import Dispatcher
from vnode.events.fanout import fan_out_once
from vnode.events.webhooks import Endpoint, WebhookChannel


async def test_dispatcher_killed_mid_delivery_redelivers_after_restart(
    fresh_db: str, sim_node: str, tmp_path: Path
) -> None:
    env = {
        "VNODE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "VNODE_MASTER_SEED": TEST_SEED,
        "VNODE_NODE": "sim",
        "VNODE_RLN_URL": sim_node,
        "VNODE_EVENTS_INTERVAL_S": "0.02",
    }
    with WebhookReceiver() as receiver:
        conn = await asyncpg.connect(fresh_db)
        try:
            info, receiver.secret = await endpoints.create_endpoint(conn, receiver.url, (), LOCAL)
        finally:
            await conn.close()
        receiver.hang()  # the bot takes the request and never answers

        first = ServeProcess(fresh_db, tmp_path / "first", extra_env=env)
        try:
            await first.wait_ready()
            alice = new_user_id()
            async with httpx.AsyncClient(base_url=first.url, headers=bearer(ADMIN_KEY)) as c:
                await fund(c, alice, 5_000)
                await fund(c, alice, 6_000)

            async def in_flight() -> bool:
                # Both events fanned out too (a busy machine may fan out the second one after
                # the first delivery started), so the kill catches both pending.
                return receiver.hung >= 1 and len(await deliveries(fresh_db, info.id)) == 2

            await wait_until(in_flight, 10, "a delivery to be in flight")
        finally:
            assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        rows = await deliveries(fresh_db, info.id)
        assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 0)] * 2
        receiver.hang(on=False)

        second = ServeProcess(fresh_db, tmp_path / "second", extra_env=env)
        try:
            await second.wait_ready()

            async def arrived() -> bool:
                rows = await deliveries(fresh_db, info.id)
                return len(set(receiver.ids())) == 2 and {r["status"] for r in rows} == {
                    "delivered"
                }

            await wait_until(arrived, 15, "the events after the restart")
            async with httpx.AsyncClient(base_url=second.url, headers=bearer(ADMIN_KEY)) as c:
                assert await balance(c, alice) == 11_000
        finally:
            second.stop()
    produced = await outbox(fresh_db)
    # At least once: the receiver may see an event twice; every event id arrives.
    assert set(receiver.ids()) == {e[0] for e in produced}
    assert receiver.seqs_by_user()[alice] in ([1, 2], [1, 1, 2], [1, 2, 2])
    assert receiver.bad_signatures == []


def cli(
    dsn: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("VNODE_")}
    full.update({"VNODE_DATABASE_URL": dsn, "VNODE_MASTER_SEED": TEST_SEED, "COLUMNS": "250"})
    full.update(env or {})
    return subprocess.run(
        [VNODE, "webhooks", *args, "--data-dir", str(tmp_path)],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- the command line -----------------------------------------------------------------------------


async def test_dead_letters_listed_and_retried_by_api_and_cli(
    fresh_db: str, sim_node: str, tmp_path: Path
) -> None:
    # No background workers here: this test runs fan-out and delivery itself, so it can give
    # up on deliveries at once (dead_after_s=0) instead of after 26 hours.
    settings = settings_for(tmp_path, sim_node, run_workers=False)
    async with running(settings, fresh_db) as node:
        with WebhookReceiver() as first, WebhookReceiver() as second:
            hooks = [await subscribe(node.client, first), await subscribe(node.client, second)]
            first.fail_all()
            second.fail_all()
            alice, bob = new_user_id(), new_user_id()
            await fund(node.client, alice, 10_000)
            await fund(node.client, bob, 20_000)
            await transfer(node.client, alice, bob, 3)
            produced = await outbox(fresh_db)
            assert len(produced) == 4
            assert await fan_out_once(node.pool, redis_enabled=False) == 4

            channels = [
                WebhookChannel(Endpoint(h["id"], h["url"], h["secret"]), LOCAL) for h in hooks
            ]

            async def all_dead() -> bool:
                for channel in channels:
                    await deliver_once(
                        node.pool, channel.endpoint.channel, channel.send, dead_after_s=0
                    )
                statuses = {r["status"] for h in hooks for r in await deliveries(fresh_db, h["id"])}
                return statuses == {"dead"}

            await wait_until(all_dead, 10, "every delivery to be dead")

            failed = await node.client.get("/admin/webhooks/failed")
            assert failed.status_code == 200
            letters = failed.json()["failed"]
            assert len(letters) == 8
            assert {(d["webhook_id"], d["event_id"]) for d in letters} == {
                (h["id"], e[0]) for h in hooks for e in produced
            }
            assert {(d["type"], d["attempts"], d["last_error"]) for d in letters} == {
                ("admin.credit", 1, "HTTP 500"),
                ("transfer.completed", 1, "HTTP 500"),
            }
            only_first = (
                await node.client.get(
                    "/admin/webhooks/failed", params={"webhook_id": hooks[0]["id"], "limit": 2}
                )
            ).json()["failed"]
            assert [d["event_id"] for d in only_first] == [e[0] for e in produced[:2]]
            listed = (await node.client.get("/admin/webhooks")).json()["webhooks"]
            assert [(w["dead"], w["pending"]) for w in listed] == [(4, 0), (4, 0)]

            shown = cli(fresh_db, tmp_path, "failed")
            assert shown.returncode == 0, shown.stderr
            assert all(e[0] in shown.stdout for e in produced), shown.stdout
            assert "HTTP 500" in shown.stdout and "transfer.completed" in shown.stdout

            dispatcher = Dispatcher(
                node.pool,
                redis_url=None,
                redis_stream_key="unused",
                redis_maxlen=1000,
                allow_hosts=LOCAL,
            )
            try:
                # The API resends the first endpoint's letters...
                first.fail_all(on=False)
                retried = await node.client.post(
                    "/admin/webhooks/retry", json={"webhook_id": hooks[0]["id"]}
                )
                assert retried.status_code == 200 and retried.json() == {"requeued": 4}

                async def first_served() -> bool:
                    await dispatcher.deliver_webhooks()
                    return len(first.received) == 4

                await wait_until(first_served, 10, "the first endpoint's letters")
                assert sorted(first.ids()) == sorted(e[0] for e in produced)
                assert_in_order_once(first)
                assert second.received == []
                remaining = (await node.client.get("/admin/webhooks/failed")).json()["failed"]
                assert {d["webhook_id"] for d in remaining} == {hooks[1]["id"]}

                # ...the CLI those of every endpoint.
                second.fail_all(on=False)
                resent = cli(fresh_db, tmp_path, "retry")
                assert resent.returncode == 0, resent.stderr
                assert "4 dead deliveries queued again" in resent.stdout

                async def second_served() -> bool:
                    await dispatcher.deliver_webhooks()
                    return len(second.received) == 4

                await wait_until(second_served, 10, "the second endpoint's letters")
                assert sorted(second.ids()) == sorted(e[0] for e in produced)
                assert_in_order_once(second)
                assert len(first.received) == 4
            finally:
                await dispatcher.close()
            empty = cli(fresh_db, tmp_path, "failed")
            assert empty.returncode == 0 and "0 shown" in empty.stdout
            assert cli(fresh_db, tmp_path, "retry", "999999").returncode == 1


async def test_cli_add_list_remove_with_the_ssrf_rule(fresh_db: str, tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/hook"
    refused = cli(fresh_db, tmp_path, "add", url)
    assert refused.returncode == 1 and "unsafe_url" in refused.stderr
    assert "VNODE_WEBHOOK_ALLOW_HOSTS" in refused.stderr.replace("\n", "")
    for bad in (
        ["ftp://example.com/"],
        ["https://u:p@example.com/"],
        [url, "--event", "transfer.done"],
    ):
        result = cli(fresh_db, tmp_path, "add", *bad)
        assert result.returncode == 2, (bad, result.stdout, result.stderr)
    cloud = cli(
        fresh_db,
        tmp_path,
        "add",
        "http://169.254.169.254/",
        env={"VNODE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"},
    )
    assert cloud.returncode == 1

    added = cli(
        fresh_db,
        tmp_path,
        "add",
        url,
        "--event",
        "transfer.completed",
        "--event",
        "invoice.paid",
        "--description",
        "bot",
        env={"VNODE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"},
    )
    assert added.returncode == 0, added.stderr
    created = json.loads(added.stdout)
    assert created["url"] == url and created["events"] == ["transfer.completed", "invoice.paid"]
    assert created["secret"].startswith("whsec_") and "shown once" in added.stderr
    conn = await asyncpg.connect(fresh_db)
    try:
        stored = await conn.fetchrow(
            "SELECT secret, event_types FROM webhook_endpoints WHERE id = $1", created["id"]
        )
    finally:
        await conn.close()
    assert stored is not None and stored["secret"] == created["secret"]

    listed = cli(fresh_db, tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    assert url in listed.stdout and "transfer.completed" in listed.stdout
    assert created["secret"] not in listed.stdout + listed.stderr

    rotated = cli(fresh_db, tmp_path, "rotate", str(created["id"]))
    assert rotated.returncode == 0, rotated.stderr
    fresh = json.loads(rotated.stdout)
    assert fresh["id"] == created["id"] and fresh["secret"].startswith("whsec_")
    assert fresh["secret"] != created["secret"] and fresh["previous_secret_until"]
    assert "shown once" in rotated.stderr and "still signs until" in rotated.stderr
    assert fresh["secret"] not in cli(fresh_db, tmp_path, "list").stdout
    no_grace = cli(fresh_db, tmp_path, "rotate", str(created["id"]), "--grace-s", "0")
    assert no_grace.returncode == 0, no_grace.stderr
    newest = json.loads(no_grace.stdout)
    assert newest["previous_secret_until"] is None and "no longer signs" in no_grace.stderr
    conn = await asyncpg.connect(fresh_db)
    try:
        keys = await conn.fetchrow(
            "SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1", created["id"]
        )
    finally:
        await conn.close()
    assert keys is not None and (keys["secret"], keys["previous_secret"]) == (
        newest["secret"],
        None,
    )
    assert cli(fresh_db, tmp_path, "rotate", "999999").returncode == 1
    assert cli(fresh_db, tmp_path, "rotate", str(created["id"]), "--grace-s", "-1").returncode == 2

    removed = cli(fresh_db, tmp_path, "remove", str(created["id"]))
    assert removed.returncode == 0 and f"webhook {created['id']} removed" in removed.stdout
    assert url not in cli(fresh_db, tmp_path, "list").stdout
    assert url in cli(fresh_db, tmp_path, "list", "--removed").stdout
    assert cli(fresh_db, tmp_path, "remove", str(created["id"])).returncode == 1
