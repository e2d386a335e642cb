"""What the proofs' integration tests share: publishing an epoch now, even while another
publisher (an in-process app's worker) holds the publishing lock."""

from __future__ import annotations

import asyncpg

from tests.support import wait_until
from vnode.keys import Signer
from vnode.proofs.publish import Published, publish_all


async def publish_now(pool: asyncpg.Pool, signer: Signer) -> list[Published]:
    """Publish an epoch of every asset from a snapshot taken now; waits (with a deadline) while
    another publisher holds the lock, since its snapshot may predate the caller's writes."""
    published: list[Published] = []

    async def done() -> bool:
        published.extend(await publish_all(pool, signer))
        return bool(published)

    await wait_until(done, timeout_s=30, what="the publishing lock")
    return published
