"""The emulator's webhook switches: drop, duplicate, delay and fail the first attempts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _helpers import emulator, png_data_uri
from _servers import RecordingServer

from fashn_prefect.emulator import EmulatorServer

IMG = png_data_uri((0, 60, 90), (40, 60))


@pytest.fixture
def sink() -> Iterator[RecordingServer]:
    """Where the emulator delivers its webhooks."""
    made = RecordingServer("/hook")
    yield made
    made.close()


def submit_many(server: EmulatorServer, url: str, count: int) -> list[str]:
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        ids = []
        for i in range(count):
            response = client.post(
                "/v1/run",
                params={"webhook_url": url},
                headers={"Authorization": f"Bearer {server.api_key}"},
                json={"model_name": "background-remove", "inputs": {"image": IMG, "n": i}},
            )
            assert response.status_code == 200, response.text
            ids.append(str(response.json()["id"]))
    return ids


def settled(server: EmulatorServer, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The predictions once all ``count`` have ended."""
    deadline = time.monotonic() + timeout
    while True:
        predictions = server.stats()["predictions"]
        done = [p for p in predictions if p["completed_at"] is not None]
        if len(done) == count:
            return predictions
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_dropped_and_duplicated_deliveries(sink: RecordingServer) -> None:
    server = emulator(time_scale=0.01, seed=5, max_in_flight=50)
    try:
        server.set_faults(webhook_drop=0.3, webhook_duplicate=0.4)
        ids = submit_many(server, sink.url, 20)
        settled(server, 20)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            faults = server.stats()["faults_injected"]
            delivered = len(ids) - faults["webhook_drop"] + faults["webhook_duplicate"]
            if len(sink.bodies) >= delivered:
                break
            time.sleep(0.02)
        faults = server.stats()["faults_injected"]
    finally:
        server.stop()
    assert faults["webhook_drop"] > 0 and faults["webhook_duplicate"] > 0
    seen = [b["id"] for b in sink.bodies]
    never = [i for i in ids if i not in seen]
    twice = [i for i in ids if seen.count(i) == 2]
    assert len(never) == faults["webhook_drop"]
    assert len(twice) >= 1 and all(seen.count(i) <= 2 for i in ids)
    assert all(b["status"] == "completed" for b in sink.bodies)


def test_failed_first_attempts_are_retried_after_the_delay(sink: RecordingServer) -> None:
    server = emulator(time_scale=0.002, seed=6)
    try:
        server.set_faults(webhook_fail_attempts=2, webhook_delay=5.0)
        (pid,) = submit_many(server, sink.url, 1)
        deadline = time.monotonic() + 20
        while True:
            # The receiver has the body before the emulator hears its answer and records
            # the delivery: wait for both.
            (prediction,) = server.stats()["predictions"]
            if sink.bodies and prediction["webhook"]["delivered"]:
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        server.stop()
    assert sink.bodies[0]["id"] == pid
    assert prediction["webhook"]["attempts"] == 3 and prediction["webhook"]["delivered"]
