"""Real servers for the flow/deployment tests: a Prefect server, workers and CLI runs.

Every process is started in its own process group (``start_new_session``) and the whole
group is killed at teardown, so no server, worker or flow-run subprocess outlives the
tests. Prefect state lives in a temporary ``PREFECT_HOME`` (never ``~/.prefect``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")
FASHN_PREFECT = str(BIN / "fashn-prefect")


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RecordingServer:
    """A loopback HTTP server that keeps what came: ``hits`` counts requests, ``bodies``
    and ``headers`` hold each POST's JSON body and headers. It answers 200 (no body),
    except 500 to the first ``failures`` POSTs. ``url`` is its address with ``path``."""

    def __init__(self, path: str = "/", failures: int = 0) -> None:
        self.hits = 0
        self.failures = failures
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.hits += 1
                self._answer(200)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                recorder.bodies.append(json.loads(self.rfile.read(length)))
                recorder.headers.append(dict(self.headers))
                recorder.hits += 1
                self._answer(500 if len(recorder.bodies) <= recorder.failures else 200)

            def _answer(self, code: int) -> None:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    """Signal ``proc``'s whole process group (it was started with a new session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen[Any]) -> None:
    """Terminate a process group politely, then kill it."""
    if proc.poll() is None:
        kill_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=8)
    kill_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@dataclass
class PrefectServer:
    """A ``prefect server start`` subprocess on a free loopback port with its own home."""

    home: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)  # extra PREFECT_SERVER_* env

    @property
    def api_url(self) -> str:
        """The server's API URL."""
        return f"http://127.0.0.1:{self.port}/api"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a process that talks to this server (never ~/.prefect)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PREFECT_", "FASHN_")) or k == "PREFECT_LOGGING_LEVEL"
        }
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_CLI_COLORS="false",
            PYTHONUNBUFFERED="1",
            COLUMNS="200",
            FASHN_PREFECT_REPO=str(REPO),
        )
        env.update(extra)
        return env

    def start(self) -> PrefectServer:
        """Start the server and wait until its health endpoint answers."""
        log = open(self.home / "server.log", "wb")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(
            [
                PREFECT,
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-scheduler",
                "--no-ui",
                "--analytics-off",
                "--no-late-runs",
            ],
            env=self.env(PREFECT_API_URL="", **self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.3)
        raise RuntimeError(f"prefect server did not start: {self.log_tail()}")

    def log_tail(self, name: str = "server.log", chars: int = 3000) -> str:
        """The end of one of the logs in the server's home."""
        path = self.home / name
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def spawn(self, args: list[str], log_name: str, **env: str) -> subprocess.Popen[bytes]:
        """Start a process (own process group) against this server, logging to its home."""
        log = open(self.home / log_name, "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            args,
            env=self.env(**env),
            cwd=str(REPO),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children.append(proc)
        return proc

    def run(
        self, args: list[str], timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion against this server (own process group)."""
        proc = subprocess.Popen(
            args,
            env=self.env(**env),
            cwd=str(REPO),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, errs = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            out, errs = proc.communicate()
            raise AssertionError(f"{args} timed out\n{out}\n{errs}") from None
        finally:
            kill_group(proc)
        return subprocess.CompletedProcess(args, proc.returncode, out, errs)

    def close(self) -> None:
        """Stop every child, then the server."""
        for child in self.children:
            stop(child)
        if self.proc is not None:
            stop(self.proc)


class BusyProxy:
    """A loopback HTTP proxy to a Prefect server that can play a busy one.

    It forwards every request, counts requests by path, and answers the first ``times``
    requests whose path contains a marker with ``503 database is locked``, as a server on
    SQLite does when two writes meet. Use as a context manager; ``url`` replaces the
    server's API URL.
    """

    def __init__(self, upstream_api_url: str) -> None:
        self.upstream = upstream_api_url.rsplit("/api", 1)[0]
        self.requests: Counter[str] = Counter()
        self._busy: dict[str, int] = {}
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=self.upstream, timeout=30)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The API URL to give the client under test."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/api"

    def busy(self, marker: str, times: int) -> None:
        """Answer 503 to the next ``times`` requests whose path contains ``marker``."""
        with self._lock:
            self._busy[marker] = times

    def count(self, marker: str) -> int:
        """Requests so far whose path contains ``marker`` (answered busy or forwarded)."""
        with self._lock:
            return sum(n for path, n in self.requests.items() if marker in path)

    def __enter__(self) -> BusyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def _answer_busy(self, path: str) -> bool:
        with self._lock:
            self.requests[path] += 1
            for marker, left in self._busy.items():
                if marker in path and left > 0:
                    self._busy[marker] = left - 1
                    return True
        return False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0]
                if proxy._answer_busy(path):
                    status, headers, content = 503, {}, b'{"detail":"database is locked"}'
                else:
                    skip = {"host", "content-length", "connection", "accept-encoding"}
                    response = proxy._http.request(
                        self.command,
                        self.path,
                        content=body,
                        headers={k: v for k, v in self.headers.items() if k.lower() not in skip},
                    )
                    status, content = response.status_code, response.content
                    headers = {
                        k: v
                        for k, v in response.headers.items()
                        if k.lower()
                        not in {
                            "content-length",
                            "content-encoding",
                            "connection",
                            "transfer-encoding",
                        }
                    }
                self.send_response(status)
                headers.setdefault("content-type", "application/json")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        return Handler


class S3RequestLog(logging.Handler):
    """The in-process moto server's request log (werkzeug's access log), counted by kind.

    ``with S3RequestLog() as log: ...`` then ``log.counts()``: objects listed (list
    requests), read (GET), written (PUT/POST) and deleted (DELETE, bulk delete).
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self._logger = logging.getLogger("werkzeug")
        self._level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> S3RequestLog:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)

    def counts(self) -> dict[str, int]:
        """Requests by kind: list, read, head, write, delete."""
        found = {"list": 0, "read": 0, "head": 0, "write": 0, "delete": 0}
        for line in self.lines:
            if '"' not in line:
                continue
            request = re.sub(r"\x1b\[[0-9;]*m", "", line.split('"')[1])  # werkzeug colours
            method, _, target = request.partition(" ")
            if method == "GET" and ("list-type=" in target or "prefix=" in target):
                found["list"] += 1
            elif method == "GET":
                found["read"] += 1
            elif method == "HEAD":
                found["head"] += 1
            elif method == "DELETE" or (method == "POST" and "?delete" in target):
                found["delete"] += 1
            elif method in ("PUT", "POST"):
                found["write"] += 1
        return found
