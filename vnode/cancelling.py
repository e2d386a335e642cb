"""Stopping a loop whose task was cancelled, whatever a step made of the cancel.

A long-running loop (a worker, the bot's event inbox) is stopped by cancelling its task. Two
libraries it awaits can lose that cancel, so the loop must also look for it itself:
- asyncpg's `async with conn.transaction()` cancelled mid-statement raises its own error from
  the rollback; a loop that logs errors and retries then slept its backoff, and a fan-out
  thread's stop took 30 s in about one test run in six.
- Python 3.11's `asyncio.wait_for` returns its call's result when the cancel arrives just as
  the call finishes (fixed in 3.12, gh-86296). redis-py 8 sends every command through it, so
  a cancel at that moment is lost and the command returns as usual. Cancelling a loop of
  short XREADGROUPs lost 17 cancels of 300 (a probe on the 2-core machine, 2026-12-07); the
  bot's inbox then read on and its stop waited forever (a CI run timed out on it).
`Task.cancelling()` still counts the lost cancel, so checking it once per pass is enough.
"""

from __future__ import annotations

import asyncio


def stop_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop, even if the cancel was lost."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
