"""Running the sim: ``serve_sim`` for the CLI (blocking), ``SimServer`` in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from vnode_sim.app import create_sim_app, sim_node_of
from vnode_sim.config import SimConfig

_START_TIMEOUT_S = 10.0


def serve_sim(host: str, port: int, config: SimConfig | None = None) -> None:
    """Serve a simulated node until interrupted (what ``vnode sim serve`` and
    ``python -m vnode_sim`` run). Logs go where the process's logging sends them."""
    uvicorn.run(create_sim_app(config), host=host, port=port, log_config=None, access_log=False)


class SimServer:
    """A simulated node on a free 127.0.0.1 port, served by uvicorn in a daemon thread.

    Use as ``with SimServer(SimConfig()) as sim: httpx.get(sim.url + "/nodeinfo")``.
    """

    def __init__(self, config: SimConfig | None = None, *, host: str = "127.0.0.1") -> None:
        self.app = create_sim_app(config)
        self.node = sim_node_of(self.app)
        # Bound before the thread starts, so the port is known and cannot be taken meanwhile.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_level="warning",
                # A request held open by the timeout fault must not hold up the stop.
                timeout_graceful_shutdown=1,
            )
        )
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            daemon=True,
            name=f"vnode-sim-{self.port}",
        )

    def start(self) -> SimServer:
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulated node did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self.node.stop_threadsafe()
        self._server.should_exit = True
        self._thread.join(timeout=_START_TIMEOUT_S)
        self._socket.close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
