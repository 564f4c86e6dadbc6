"""Webhook delivery from the emulator to a real loopback receiver, with retries."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from _helpers import png_data_uri
from _servers import RecordingServer

from fashn_prefect.emulator import EmulatorServer

IMG = png_data_uri((0, 90, 90), (40, 60))


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[int], RecordingServer]]:
    """Makes receivers that fail their first N deliveries with 500."""
    made: list[RecordingServer] = []

    def make(failures: int) -> RecordingServer:
        receiver = RecordingServer("/hook", failures)
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
    receiver_factory: Callable[[int], RecordingServer],
) -> None:
    server = fashn_emulator_factory(time_scale=0.01)
    receiver = receiver_factory(2)
    pid = submit(server, receiver.url, {"image": IMG})
    hook = wait_webhook(server, 3)
    assert hook == {"url": receiver.url, "attempts": 3, "delivered": True}
    assert len(receiver.bodies) == 3
    payload = receiver.bodies[-1]
    assert payload["id"] == pid and payload["status"] == "completed"
    assert payload["error"] is None
    assert payload["output"] == [f"{server.url}/cdn/{pid}/output_0.png"]
    assert receiver.bodies[0] == payload  # the same envelope each time
    assert receiver.headers[0]["Content-Type"] == "application/json"
    with httpx.Client(trust_env=False) as client:
        assert client.get(payload["output"][0]).status_code == 200


def test_webhook_for_failed_prediction(
    fashn_emulator_factory: Callable[..., EmulatorServer],
    receiver_factory: Callable[[int], RecordingServer],
) -> None:
    server = fashn_emulator_factory(time_scale=0.01)
    receiver = receiver_factory(0)
    pid = submit(
        server, receiver.url, {"image": IMG, "tag": "emulator-fail:ContentModerationError"}
    )
    assert wait_webhook(server, 1)["delivered"]
    (payload,) = receiver.bodies
    assert payload["id"] == pid and payload["status"] == "failed" and payload["output"] is None
    assert payload["error"]["name"] == "ContentModerationError"


def test_webhook_gives_up_after_five_retries(
    fashn_emulator_factory: Callable[..., EmulatorServer],
    receiver_factory: Callable[[int], RecordingServer],
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
    assert hook["attempts"] == 6 and len(receiver.bodies) == 6
