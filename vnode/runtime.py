"""Where the database and Redis are (VNODE_DATABASE_URL and VNODE_REDIS_URL, or the embedded
servers of the data dir), and how `vnode serve` stops.

Every stop signal (SIGTERM from systemd, Docker and `timeout`; SIGINT from Ctrl-C; SIGHUP when
the terminal goes away; SIGQUIT) means the same orderly stop: drain requests, stop the workers,
stop the simulated node, the Redis server and the database this process started. uvicorn's own
handling is not enough: after draining it re-raises SIGTERM with the default action, which kills
the process before the embedded PostgreSQL is stopped, and it does not handle SIGHUP or SIGQUIT
at all.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn

from vnode.db.embedded import EmbeddedPostgres
from vnode.embedded_redis import EmbeddedRedis
from vnode.settings import Settings

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
# Drain (5 s) + app shutdown + workers (15 s) + sim (10 s) + Redis (10 s) + database (fast 20 s)
# fit in this; past it the watchdog stops the database at once and exits, so a stop is always
# bounded.
STOP_DEADLINE_S = 70.0


class SignalFreeServer(uvicorn.Server):
    """uvicorn's server without its signal handling: the process's stop signals belong to
    StopSignals (or another owner), which asks this server to drain (uvicorn would re-raise
    SIGTERM with the default action after draining, killing the process before the embedded
    database is stopped)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class StopRequested(BaseException):
    """A stop signal arrived outside serving; unwinds like KeyboardInterrupt (no `except
    Exception` swallows it), running every cleanup on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """Owns the stop signals from install() until the process exits.

    Outside serving, the first signal raises StopRequested where the main thread is, except
    inside shield() (starting a child process), where it waits for the block to end, so no
    child is left half-started. While serving, it asks the HTTP server to drain instead.
    Later signals never interrupt the stop already under way; a second one while serving asks
    the server to stop waiting for open connections.
    """

    def __init__(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        self.received: int | None = None
        self._deadline_s = deadline_s
        self._shielded = 0
        self._raised = False
        self._stopping = False
        self._on_stop: Callable[[], None] | None = None
        self._on_repeat: Callable[[], None] | None = None
        self._last_resorts: list[Callable[[], None]] = []
        self._watchdog: threading.Timer | None = None
        self._ignored: set[int] | None = None

    def install(self) -> None:
        if self._ignored is None:
            # A signal ignored when we started stays ignored: `nohup vnode serve` asked for it.
            self._ignored = {s for s in STOP_SIGNALS if signal.getsignal(s) is signal.SIG_IGN}
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN if signum in self._ignored else self._handle)

    def close(self) -> None:
        """The stop finished: disarm the watchdog."""
        if self._watchdog is not None:
            self._watchdog.cancel()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            log.warning("%s received while stopping; the stop is under way", name)
            if self._on_repeat is not None:
                self._on_repeat()
            return
        self.received = signum
        log.info(
            "%s received: stopping (drain requests, stop workers, the simulated node and "
            "the embedded database)",
            name,
        )
        self._watchdog = threading.Timer(self._deadline_s, self._overrun)
        self._watchdog.daemon = True
        self._watchdog.start()
        if self._on_stop is not None:
            self._on_stop()
        else:
            self._raise_if_due()

    def _raise_if_due(self) -> None:
        if (
            self.received is not None
            and not self._raised
            and not self._stopping
            and self._shielded == 0
            and self._on_stop is None
        ):
            self._raised = True
            raise StopRequested(self.received)

    def begin_stop(self) -> None:
        """Cleanup has begun: a signal from now on must not interrupt it."""
        self._stopping = True

    @contextmanager
    def shield(self) -> Iterator[None]:
        """A stop signal received in this block takes effect when the block ends."""
        self._shielded += 1
        try:
            yield
        finally:
            self._shielded -= 1
        self._raise_if_due()  # only reached when the block succeeded

    @contextmanager
    def serving(
        self, on_stop: Callable[[], None], on_repeat: Callable[[], None] | None = None
    ) -> Iterator[None]:
        """While the block runs, a stop signal calls `on_stop` (begin a graceful shutdown).
        (Re)installs the handlers: uvicorn's worker supervisor installs its own on creation."""
        self.install()
        self._on_stop, self._on_repeat = on_stop, on_repeat
        if self.received is not None:
            on_stop()  # the signal came before the server was ready to hear it
        try:
            yield
        finally:
            self._on_stop = self._on_repeat = None
            self.begin_stop()

    @contextmanager
    def last_resort(self, action: Callable[[], None]) -> Iterator[None]:
        """Register `action` for the watchdog: it runs if the stop overruns its deadline."""
        self._last_resorts.append(action)
        try:
            yield
        finally:
            self._last_resorts.remove(action)

    def _overrun(self) -> None:  # runs in the watchdog thread
        log.error(
            "stopping took longer than %.0fs; stopping what is left at once and exiting",
            self._deadline_s,
        )
        for action in reversed(self._last_resorts):
            try:
                action()
            except Exception:
                log.exception("last-resort stop failed")
        os._exit(1)


@contextmanager
def _shielded(signals: StopSignals | None) -> Iterator[None]:
    if signals is None:
        yield
    else:
        with signals.shield():
            yield


@contextmanager
def database_url(settings: Settings, signals: StopSignals | None = None) -> Iterator[str]:
    """Yield a DSN. The embedded cluster is used while the block runs and stopped on exit
    unless another vnode process still uses it (see vnode.db.embedded)."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    cluster = EmbeddedPostgres(settings.embedded_pg_dir)
    try:
        with _shielded(signals):
            dsn = cluster.start()
        if signals is None:
            yield dsn
        else:
            with signals.last_resort(cluster.stop_now):
                yield dsn
    finally:
        if signals is not None:
            signals.begin_stop()
        cluster.stop()


@contextmanager
def redis_url(settings: Settings, signals: StopSignals | None = None) -> Iterator[str | None]:
    """Yield the Redis URL vnode publishes its events to: VNODE_REDIS_URL, or the embedded
    server of the data dir, started here and stopped on exit (None: embedded_redis is off).
    A server another `vnode serve` of the same data dir already runs is used, not owned."""
    if settings.redis_url is not None:
        yield settings.redis_url.get_secret_value()
        return
    if not settings.embedded_redis:
        yield None
        return
    server = EmbeddedRedis(settings.data_dir)
    if server.running():
        log.info("using the embedded Redis server already running at %s", server.url)
        yield server.url
        return
    try:
        with _shielded(signals):
            server.start()
        if signals is None:
            yield server.url
        else:
            with signals.last_resort(server.kill):
                yield server.url
    finally:
        if signals is not None:
            signals.begin_stop()
        server.stop()
