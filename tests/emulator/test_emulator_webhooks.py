"""Webhook delivery from the emulator to a real loopback receiver, with retries."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from _helpers import png_data_uri

from fashn_prefect.emulator import EmulatorServer

IMG = png_data_uri((0, 90, 90), (40, 60))


class Receiver:
    """A tiny HTTP server that fails the first ``failures`` POSTs with 500."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.attempts.append(json.loads(self.rfile.read(length)))
                receiver.headers.append(dict(self.headers))
                code = 500 if len(receiver.attempts) <= receiver.failures else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[int], Receiver]]:
    made: list[Receiver] = []

    def make(failures: int) -> Receiver:
        receiver = Receiver(failures)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


def submit(server: EmulatorServer, webhook_url: str, inputs: dict[str, Any]) -> str:
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        response = client.post(
            "/v1/run",
            params={"webhook_url": webhook_url},
            headers={"Authorization": f"Bearer {server.api_key}"},
            json={"model_name": "background-remove", "inputs": inputs},
        )
    assert response.status_code == 200
    return str(response.json()["id"])


def wait_webhook(server: EmulatorServer, attempts: int, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        (prediction,) = server.stats()["predictions"]
        hook = prediction["webhook"]
        if hook["delivered"] or hook["attempts"] >= attempts:
            return dict(hook)
        assert time.monotonic() < deadline, hook
        time.sleep(0.02)


def test_webhook_retried_until_delivered(
    fashn_emulator_factory: Callable[..., EmulatorServer],
    receiver_factory: Callable[[int], Receiver],
) -> None:
    server = fashn_emulator_factory(time_scale=0.01)
    receiver = receiver_factory(2)
    pid = submit(server, receiver.url, {"image": IMG})
    hook = wait_webhook(server, 3)
    assert hook == {"url": receiver.url, "attempts": 3, "delivered": True}
    assert len(receiver.attempts) == 3
    payload = receiver.attempts[-1]
    assert payload["id"] == pid and payload["status"] == "completed"
    assert payload["error"] is None
    assert payload["output"] == [f"{server.url}/cdn/{pid}/output_0.png"]
    assert receiver.attempts[0] == payload  # the same envelope each time
    assert receiver.headers[0]["Content-Type"] == "application/json"
    with httpx.Client(trust_env=False) as client:
        assert client.get(payload["output"][0]).status_code == 200


def test_webhook_for_failed_prediction(
    fashn_emulator_factory: Callable[..., EmulatorServer],
    receiver_factory: Callable[[int], Receiver],
) -> None:
    server = fashn_emulator_factory(time_scale=0.01)
    receiver = receiver_factory(0)
    pid = submit(
        server, receiver.url, {"image": IMG, "tag": "emulator-fail:ContentModerationError"}
    )
    assert wait_webhook(server, 1)["delivered"]
    (payload,) = receiver.attempts
    assert payload["id"] == pid and payload["status"] == "failed" and payload["output"] is None
    assert payload["error"]["name"] == "ContentModerationError"


def test_webhook_gives_up_after_five_retries(
    fashn_emulator_factory: Callable[..., EmulatorServer],
    receiver_factory: Callable[[int], Receiver],
) -> None:
    server = fashn_emulator_factory(time_scale=0.002)
    receiver = receiver_factory(100)
    submit(server, receiver.url, {"image": IMG})
    hook = wait_webhook(server, 6)
    # Move the emulated clock past any retry delay, then wait until the prediction's
    # worker (which delivers its webhook) has ended: a seventh attempt would be counted.
    server.advance_clock(10_000)
    tasks = server.app.emulator.state.tasks
    deadline = time.monotonic() + 10
    while tasks:
        assert time.monotonic() < deadline, "the webhook worker never ended"
        time.sleep(0.01)
    assert server.stats()["predictions"][0]["webhook"] == {
        "url": receiver.url,
        "attempts": 6,
        "delivered": False,
    }
    assert hook["attempts"] == 6 and len(receiver.attempts) == 6
