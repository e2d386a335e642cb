"""The fan-out's wake-up: code that committed outbox rows says so, and the fan-out thread of the
same process starts its next pass now instead of at its next poll (docs/adr/0030).

Only a hint: the fan-out still polls every `events_interval_s`, which is what delivers events
committed by another process, or whose wake-up came while no fan-out thread listened. A commit
costs the committing thread one flag test, and at most one `call_soon_threadsafe` per pass of
the fan-out (the flag stays up until the fan-out's loop has taken the wake-up).
"""

from __future__ import annotations

import asyncio
import contextlib


class Wakeup:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._armed = False  # a wake-up is on its way to the loop

    def attach(self) -> asyncio.Event:
        """Called on the listening loop: the event set after each commit (one listener)."""
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._armed = False
        return self._event

    def detach(self, event: asyncio.Event) -> None:
        if self._event is event:
            self._loop = self._event = None

    def committed(self) -> None:
        """From any thread, after a commit that wrote outbox rows."""
        loop = self._loop
        if loop is None or self._armed:
            return
        self._armed = True
        # RuntimeError: the loop closed meanwhile (its thread is stopping); the poll is gone too.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        # Lowered before the event is set: a commit after this line sends another wake-up.
        self._armed = False
        if self._event is not None:
            self._event.set()


# This process's fan-out wake-up (vnode/events/fanout_thread.py listens).
OUTBOX = Wakeup()
