"""Fan-out and Redis Streams delivery on an event loop of their own, in a thread (docs/adr/0027).

On the API's event loop each of a fan-out pass's round trips (about fifteen: the fan-out
transaction, then the Redis batch's) waited behind every request being served and every webhook
post in flight: Redis Streams lagged 540-820 ms at p99 under the transfer load (bench/events.py,
docs/PERFORMANCE.md). On a loop of its own a round trip waits at most for the interpreter's lock
(handed over within the switch interval, 5 ms, when the API's thread is busy), not for a queue
of other work.

The thread has its own small pool (an asyncpg pool belongs to one loop), its own dispatcher and
supervisor; the API's loop keeps the webhooks. Nothing else is shared but the database, which
makes it safe as it makes several processes safe: the fan-out and each channel under their
advisory locks, an event acknowledged only after Redis took it. A pass that fails is the
supervisor's to retry, as anywhere; stopping the thread ends its passes where they are (what
was sent and not acknowledged is sent again: at least once, each user's in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from vnode.db.pool import create_pool
from vnode.events.dispatcher import Dispatcher
from vnode.events.wakeup import OUTBOX
from vnode.metrics import Metrics
from vnode.settings import Settings
from vnode.workers.supervisor import Supervisor

log = logging.getLogger(__name__)

POOL_SIZE = 2  # the fan-out's transaction and the Redis batch's, one after the other
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class FanOutThread:
    def __init__(self, settings: Settings, database_url: str, metrics: Metrics | None) -> None:
        self.settings = settings
        self.database_url = database_url
        self.metrics = metrics
        self._started = threading.Event()
        self._failed: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="vnode-fan-out", daemon=True)

    async def start(self) -> None:
        """Start the thread; returns once its pool is connected and its workers run."""
        self._thread.start()
        if not await asyncio.to_thread(self._started.wait, START_TIMEOUT_S):
            raise RuntimeError("the fan-out thread did not start in time")
        if self._failed is not None:
            raise RuntimeError("the fan-out thread could not start") from self._failed

    async def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            # RuntimeError: its loop closed meanwhile; the thread is ending by itself.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        await asyncio.to_thread(self._thread.join, STOP_TIMEOUT_S)
        if self._thread.is_alive():
            log.error("the fan-out thread did not stop in time")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(), or logged
            self._failed = exc
            if self._started.is_set():
                log.exception("the fan-out thread failed")
        finally:
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        settings = self.settings
        pool = await create_pool(
            self.database_url,
            min_size=1,
            max_size=POOL_SIZE,
            application_name="vnode-fan-out",
        )
        dispatcher = Dispatcher(
            pool,
            redis_url=settings.redis_url.get_secret_value() if settings.redis_url else None,
            redis_stream_key=settings.redis_stream_key,
            redis_maxlen=settings.redis_stream_maxlen,
            allow_hosts=settings.allowed_webhook_hosts,
        )
        supervisor = Supervisor(self.metrics)
        # Woken by this process's commits of outbox rows; the period stays, as the safety net
        # and for what other processes commit (docs/adr/0030).
        wake = OUTBOX.attach()
        try:
            supervisor.every(
                "event-fan-out", settings.events_interval_s, dispatcher.fan_out, wake=wake
            )
            # Retries, and what another process fanned out (the fan-out pass sends its own).
            supervisor.every("redis-delivery", settings.events_interval_s, dispatcher.deliver_redis)
            self._started.set()
            await self._stop.wait()
        finally:
            OUTBOX.detach(wake)
            await supervisor.stop()
            await dispatcher.close()
            await pool.close()
