"""Runs with a local webhook receiver against the emulator: ends learned from deliveries,
each confirmed by one status call; lost, repeated and forged deliveries change nothing but
the number of status calls; a delivery that beats the ``POST`` answer is not lost.

No timing is asserted: the emulator's ground truth (its predictions, charges, status
calls per prediction and webhook attempts) and the results table are.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _helpers import (
    check_invariants,
    emulator,
    host_images,
    limit_rejections,
    predictions_per_input,
    put_images,
    results,
    specs_of,
    tryon_rows,
    write_manifest,
)
from _servers import RecordingServer, free_port

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.flows import run_manifest
from fashn_prefect.webhooks.receiver import callback_url
from fashn_prefect.webhooks.token import process_token

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(240)]
EIGHT_SECONDS = 1.25  # tryon-v1.6 performance x 1.25 + queue: jobs of about 8 s


@pytest.fixture
def trap() -> Iterator[RecordingServer]:
    """Where forged output URLs point: nothing may fetch from it."""
    made = RecordingServer("/forged.png")
    yield made
    made.close()


class Forger(threading.Thread):
    """Sends one forged delivery (with the right token) for every other prediction while it
    is still running: alternately a ``completed`` envelope whose output is the trap, and a
    ``failed`` one."""

    def __init__(self, server: Any, receiver_url: str, trap_url: str) -> None:
        super().__init__(daemon=True)
        self.server, self.url, self.trap_url = server, receiver_url, trap_url
        self.forged: set[str] = set()
        self.done = threading.Event()

    def run(self) -> None:
        seen: set[str] = set()
        with httpx.Client(trust_env=False, timeout=5) as client:
            while not self.done.wait(0.01):
                for p in self.server.stats()["predictions"]:
                    if p["id"] in seen or p["completed_at"] is not None:
                        continue
                    seen.add(p["id"])
                    if len(seen) % 2:
                        continue
                    if len(seen) % 4 == 0:
                        body = {"id": p["id"], "status": "completed", "output": [self.trap_url]}
                    else:
                        body = {"id": p["id"], "status": "failed", "output": None}
                        body["error"] = {"name": "PipelineError", "message": "forged"}
                    if client.post(self.url, json=body).status_code == 200:
                        self.forged.add(p["id"])


async def run(tmp_path: Path, server: Any, rows: list[dict[str, Any]], **options: Any) -> dict:
    manifest = write_manifest(str(tmp_path / "m.csv"), rows)
    return await run_manifest(
        manifest=manifest,
        output=str(tmp_path / "out"),
        credentials=FashnCredentials(api_key=server.api_key, base_url=server.url),
        shared_limits=False,
        **options,
    )


async def test_ends_are_learned_from_webhooks_each_confirmed_by_a_status_call(
    tmp_path: Path,
) -> None:
    scale = 0.05
    server = emulator(time_scale=scale, latency_multiplier=EIGHT_SECONDS, seed=24)
    try:
        images = put_images(str(tmp_path / "images"))
        rows = tryon_rows(12, images["models"], images["garments"])
        summary = await run(tmp_path, server, rows, time_scale=scale, webhook_listen="127.0.0.1:0")
        stats = server.stats()
    finally:
        server.stop()
    table = results(summary["results"])
    assert {r["status"] for r in table} == {"completed"}
    assert limit_rejections(stats) == {}
    predictions = stats["predictions"]
    assert all(p["webhook"]["delivered"] for p in predictions)
    assert all(p["status_calls"] >= 1 for p in predictions), "every end is confirmed"
    seen_by = [r["completion_seen_by"] for r in table]
    assert set(seen_by) <= {"webhook", "poll"}
    assert seen_by.count("webhook") >= len(table) / 2
    assert all(r["detection_delay_s"] is not None for r in table)
    # One confirming call per delivered end, plus polls only for overdue webhooks.
    assert sum(p["status_calls"] for p in predictions) <= 2 * len(predictions)


async def test_lost_repeated_and_forged_deliveries_lose_nothing(
    tmp_path: Path, trap: RecordingServer
) -> None:
    scale = 0.05
    port = free_port()
    server = emulator(
        time_scale=scale,
        latency_multiplier=EIGHT_SECONDS,
        seed=25,
    )
    server.set_faults(webhook_drop=0.25, webhook_duplicate=0.3)
    forger = Forger(server, callback_url(f"http://127.0.0.1:{port}", process_token()), trap.url)
    forger.start()
    try:
        rows = tryon_rows(16, *host_images(server))
        summary = await run(
            tmp_path, server, rows, time_scale=scale, webhook_listen=f"127.0.0.1:{port}"
        )
        stats = server.stats()
    finally:
        forger.done.set()
        forger.join()
        server.stop()
    faults = stats["faults_injected"]
    assert faults["webhook_drop"] > 0 and faults["webhook_duplicate"] > 0
    assert forger.forged, "forged deliveries reached the receiver"
    table = results(summary["results"])
    output = str(tmp_path / "out")
    check = check_invariants(specs_of(str(tmp_path / "m.csv")), table, stats, output)
    assert check.problems == []
    assert {r["status"] for r in table} == {"completed"}, "a forged failure fails no row"
    assert trap.hits == 0, "an output URL from a webhook body was fetched"
    assert set(predictions_per_input(stats).values()) == {1}, "nothing submitted twice"
    assert limit_rejections(stats) == {}
    predictions = stats["predictions"]
    assert sum(p["status_calls"] for p in predictions) <= 2 * len(predictions)
    by_id = {p["id"]: p for p in predictions}
    for row in table:
        prediction = by_id[row["prediction_ids"][0]]
        if prediction["webhook"]["attempts"] == 0 and prediction["id"] not in forger.forged:
            assert row["completion_seen_by"] == "poll", "a lost webhook is made up by polling"


async def test_a_delivery_that_beats_the_post_answer_is_held_not_lost(tmp_path: Path) -> None:
    scale = 0.02
    server = emulator(time_scale=scale, seed=26)
    server.set_faults(slow_seconds=3.0)
    try:
        images = put_images(str(tmp_path / "images"))
        rows = [
            {
                "row_id": "early",
                "model_name": "edit",
                "image": images["garments"][0],
                "prompt": "make it blue emulator-fault:slow_response",
            }
        ]
        summary = await run(tmp_path, server, rows, time_scale=scale, webhook_listen="127.0.0.1:0")
        stats = server.stats()
    finally:
        server.stop()
    assert stats["faults_injected"]["slow_response"] == 1
    (row,) = results(summary["results"])
    (prediction,) = stats["predictions"]
    assert row["status"] == "completed" and prediction["webhook"]["delivered"]
    assert row["completion_seen_by"] == "webhook"
    assert prediction["status_calls"] == 1


async def test_a_receiver_that_cannot_start_leaves_the_run_polling(tmp_path: Path) -> None:
    scale = 0.02
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    server = emulator(time_scale=scale, seed=27)
    try:
        rows = tryon_rows(4, *host_images(server))
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        summary = await run(tmp_path, server, rows, time_scale=scale, webhook_listen=listen)
        stats = server.stats()
    finally:
        server.stop()
        taken.close()
    table = results(summary["results"])
    assert {r["status"] for r in table} == {"completed"}
    assert {r["completion_seen_by"] for r in table} == {"poll"}
    assert all(p["webhook"] is None for p in stats["predictions"]), "no webhook was asked for"
