"""Running the emulator: :class:`EmulatorServer` (background thread) and :func:`serve` (blocking)."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from .app import EmulatorApp, create_app
from .config import EmulatorConfig
from .inputs import is_loopback_host


def _uvicorn_config(app: EmulatorApp, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,
        access_log=False,
        http="h11",
        ws="none",
        lifespan="on",
        loop="asyncio",
        timeout_graceful_shutdown=2,
        # Idle connections stay open as behind a load balancer (nginx's 75 s), far past
        # the client's pool expiry: a request never meets a connection closing under it.
        timeout_keep_alive=75,
    )


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class EmulatorServer:
    """The emulator on a loopback port, served by uvicorn in a background thread.

    Use as a context manager (or ``start()``/``stop()``). ``port=0`` picks a free port; the bound
    port is read back from the listening socket.
    """

    def __init__(
        self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if not is_loopback_host(host):
            raise ValueError("EmulatorServer only binds loopback addresses")
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self.app = create_app(self.config)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._client: httpx.Client | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (valid after start)."""
        return _url(self.host, self.port)

    @property
    def api_key(self) -> str:
        """The first configured API key."""
        return self.config.api_keys[0]

    def start(self) -> EmulatorServer:
        """Start serving; returns once the socket is listening."""
        if self._thread is not None:
            return self
        self._server = uvicorn.Server(_uvicorn_config(self.app, self.host, self.port, "warning"))
        self._thread = threading.Thread(target=self._run, name="fashn-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._thread.join(timeout=1)
                self._thread = None
                raise RuntimeError(f"FASHN emulator failed to start: {self._error!r}")
            time.sleep(0.005)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self._client = httpx.Client(base_url=self.url, trust_env=False, timeout=30.0)
        return self

    def _run(self) -> None:
        assert self._server is not None
        try:
            self._server.run()
        except BaseException as exc:  # SystemExit from uvicorn when the bind fails
            self._error = exc

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._thread = None
        self._server = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- control helpers (over HTTP, so they are safe from any thread) ----------------------
    def _control(self) -> httpx.Client:
        if self._client is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._client

    def stats(self) -> dict[str, Any]:
        """Same JSON as ``GET /_emulator/stats``."""
        response = self._control().get("/_emulator/stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def set_faults(self, **changes: Any) -> None:
        """Merge fault settings (FaultConfig field names) into the live configuration."""
        response = self._control().put("/_emulator/faults", json=changes)
        if response.status_code == 400:
            raise ValueError(response.json().get("message"))
        response.raise_for_status()

    def advance_clock(self, seconds: float) -> None:
        """Move the emulated clock forward by ``seconds`` emulated seconds."""
        self._control().post(
            "/_emulator/clock/advance", json={"seconds": seconds}
        ).raise_for_status()

    def reset(self) -> None:
        """Forget predictions, counters and limits; restore credits, faults and the clock."""
        self._control().post("/_emulator/reset").raise_for_status()

    def put_file(self, name: str, data: bytes, content_type: str) -> str:
        """Host ``data`` at ``/files/<name>`` (a stand-in public image host); returns its URL."""
        response = self._control().put(
            f"/_emulator/files/{name}", content=data, headers={"Content-Type": content_type}
        )
        response.raise_for_status()
        return f"{self.url}/files/{name}"


def serve(config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the emulator in the foreground until interrupted (Ctrl-C)."""
    app = create_app(config or EmulatorConfig())
    uvicorn.Server(_uvicorn_config(app, host, port, "info")).run()
