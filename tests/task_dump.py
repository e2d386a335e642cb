"""What every asyncio task awaits, for a test about to time out.

pytest-timeout shows where the main thread is, which for an async test is the event loop's
select(): nothing about what is stuck. This writes each pending task's whole await chain (a
task's own get_stack() stops at its outermost coroutine) a little before the timeout, into the
test's captured stderr. tests/conftest.py starts it from pytest-timeout's own timer hooks,
which know each test's timeout and when its clock starts. It reads the tasks from a timer
thread while the loop waits in select(); it only reads, so a torn view costs a line of the
dump, never the test."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import Iterator
from typing import Any

# Written this long before pytest-timeout fails the test.
_AHEAD_S = 15.0


def _chain(awaitable: Any) -> Iterator[str]:
    for _ in range(100):
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None)
        if frame is not None:
            code = frame.f_code
            yield f"    {code.co_filename}:{frame.f_lineno} {code.co_name}"
        inner = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
        if inner is None:
            yield f"    awaiting {awaitable!r}"
            return
        awaitable = inner


def dump_tasks() -> str:
    lines = ["pending asyncio tasks, each with what it awaits:"]
    for task in [o for o in gc.get_objects() if isinstance(o, asyncio.Task)]:
        try:
            if task.done():
                continue
            lines.append(f"  {task.get_name()} cancelling={task.cancelling()}")
            lines.extend(_chain(task.get_coro()))
        except Exception as exc:
            lines.append(f"  (unreadable task: {exc!r})")
    return "\n".join(lines)


def start(timeout_s: float) -> threading.Timer:
    """A timer that dumps the tasks `_AHEAD_S` before `timeout_s` from now, started."""

    def write() -> None:
        sys.stderr.write(dump_tasks() + "\n")

    timer = threading.Timer(max(timeout_s - _AHEAD_S, 1.0), write)
    timer.daemon = True
    timer.start()
    return timer
