"""Crash points for the crash tests: the process SIGKILLs itself at a named point.

Active only when VNODE_CRASH_POINTS names the point; production never sets it.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)


def crash_point(configured: str, name: str) -> None:
    if configured and name in configured.split(","):
        log.warning("crash point reached: killing this process", extra={"crash_point": name})
        os.kill(os.getpid(), signal.SIGKILL)
