"""A loopback TCP proxy that injects storage faults into real S3 (moto) traffic.

It sits between s3fs/botocore and the moto server and forwards bytes unchanged while
its mode is ``pass``. In the other modes every request chunk that arrives from the
client (on new and on kept-alive connections) is hit:

* ``reset``: the connection is closed at once with a TCP reset (no response);
* ``stall``: the request is swallowed and not answered (the client's read timeout fires; after
  STALL_SECONDS the proxy resets the connection itself);
* ``truncate``: the headers and half of the body are forwarded, then both sides are
  reset, so the server sees an upload that dies half way.

Besides the global mode, :meth:`fail_requests` aims faults at the next requests whose
request line contains a marker (e.g. the results table's folder), so a test can be
sure that a given write meets an outage. Decisions are made per request.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections import Counter

MODES = ("pass", "reset", "stall", "truncate")
STALL_SECONDS = 4.0
_METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ")


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream``; switch faults on with :meth:`set_mode`."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"
        self.injected: Counter[str] = Counter()
        self.hits: list[tuple[str, str]] = []  # (mode, request line it hit)
        self.connections = 0
        self.bytes_up = 0
        self._lock = threading.Lock()
        self._rules: dict[str, list[str]] = {}
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        """The endpoint URL to give s3fs instead of the server's."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in list(self._sockets):
                _close(sock, reset=True)

    def set_mode(self, mode: str) -> None:
        """Switch the fault mode for every request from now on."""
        assert mode in MODES, mode
        self.mode = mode

    # ------------------------------------------------------------------ internals

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._sockets.update(socks)

    def fail_requests(self, marker: str, modes: list[str]) -> None:
        """The next requests whose request line contains ``marker`` get ``modes`` in turn."""
        with self._lock:
            self._rules[marker] = list(modes)

    def _decide(self, request: str) -> str:
        with self._lock:
            for marker, modes in self._rules.items():
                if marker in request and modes:
                    return modes.pop(0)
        return self.mode

    def _hit(self, mode: str, request: str) -> None:
        with self._lock:
            self.injected[mode] += 1
            self.hits.append((mode, request))

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            _close(client, reset=True)
            return
        upstream.settimeout(None)
        self._track(client, upstream)
        threading.Thread(target=self._pump_down, args=(upstream, client), daemon=True).start()
        stalled = False
        current, budget = "pass", 0
        try:
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    break
                if stalled:
                    continue  # this connection never answers again
                if chunk.startswith(_METHODS):
                    request = chunk.split(b"\r\n", 1)[0].decode("latin-1")
                    current = self._decide(request)
                    if current != "pass":
                        self._hit(current, request)
                    if current == "truncate":
                        budget = _half_request(chunk)
                if current == "stall":
                    # Never answer; after STALL_SECONDS give up with a reset (a client that
                    # ignores its own timeout must not hang the test forever).
                    stalled = True
                    client.settimeout(STALL_SECONDS)
                    continue
                if current == "reset":
                    break
                if current == "truncate":
                    part = chunk[:budget]
                    budget -= len(part)
                    upstream.sendall(part)
                    if budget <= 0:
                        break
                    continue
                upstream.sendall(chunk)
                with self._lock:
                    self.bytes_up += len(chunk)
        except OSError:  # includes the stall's timeout
            pass
        finally:
            _close(client, reset=True)
            _close(upstream, reset=True)
            with self._lock:
                self._sockets.discard(client)
                self._sockets.discard(upstream)

    def _pump_down(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)


def _half_request(chunk: bytes) -> int:
    """Bytes to forward so that the server gets the headers and half of the body."""
    end = chunk.find(b"\r\n\r\n")
    if end < 0:
        return max(1, len(chunk) // 2)
    length = 0
    for line in chunk[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
    return end + 4 + length // 2 if length > 1 else max(1, end // 2)


def _close(sock: socket.socket, *, reset: bool) -> None:
    try:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
