"""The webhook relay on a real ``prefect server start``: FASHN's calls become Prefect
events that the run reads from the server's event stream; with the relay down, FASHN's
retries and the run's overdue polling lose nothing.

No timing is asserted; the emulator's ground truth and the results table are.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _helpers import emulator, host_images, limit_rejections, results, tryon_rows, write_manifest
from _servers import FASHN_PREFECT, PrefectServer, free_port
from prefect.settings import PREFECT_API_URL, temporary_settings

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.flows import run_manifest
from fashn_prefect.webhooks.receiver import callback_url
from fashn_prefect.webhooks.relay import close_event_streams, event_stream
from fashn_prefect.webhooks.token import derived_token

pytestmark = pytest.mark.timeout(300)
SECRET = "relay-secret-for-tests"
SCALE = 0.2
EIGHT_SECONDS = 1.25


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    srv = PrefectServer(tmp_path_factory.mktemp("prefect-home"), free_port())
    try:
        yield srv.start()
    finally:
        close_event_streams()
        srv.close()


def start_relay(server: PrefectServer, port: int) -> Any:
    """Spawn ``fashn-prefect webhook-relay`` and wait until it refuses a tokenless call."""
    proc = server.spawn(
        [FASHN_PREFECT, "webhook-relay", "--listen", f"127.0.0.1:{port}"],
        f"relay-{port}.log",
        FASHN_PREFECT_WEBHOOK_SECRET=SECRET,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            answer = httpx.post(f"http://127.0.0.1:{port}/fashn-webhook", json={}, timeout=2)
            assert answer.status_code == 403
            return proc
        except httpx.TransportError:
            assert proc.poll() is None, server.log_tail(f"relay-{port}.log")
            assert time.monotonic() < deadline, "the relay did not start"
            time.sleep(0.1)


async def run_through_relay(
    tmp_path: Path, emu: Any, port: int, monkeypatch: pytest.MonkeyPatch, api: str, rows: int
) -> dict[str, Any]:
    monkeypatch.setenv("FASHN_PREFECT_WEBHOOK_SECRET", SECRET)
    manifest = write_manifest(str(tmp_path / "m.csv"), tryon_rows(rows, *host_images(emu)))
    with temporary_settings(updates={PREFECT_API_URL: api}):
        return await run_manifest(
            manifest=manifest,
            output=str(tmp_path / "out"),
            credentials=FashnCredentials(api_key=emu.api_key, base_url=emu.url),
            time_scale=SCALE,
            shared_limits=False,
            check_balance=False,
            webhook_url=f"http://127.0.0.1:{port}",
        )


async def test_ends_arrive_as_prefect_events(
    server: PrefectServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    relay = start_relay(server, port)
    emu = emulator(time_scale=SCALE, latency_multiplier=EIGHT_SECONDS, seed=31)
    try:
        # A forged call without the derived token is refused and passed on to nobody.
        url = callback_url(f"http://127.0.0.1:{port}", derived_token("wrong secret"))
        assert httpx.post(url, json={"id": "x", "status": "completed"}).status_code == 403
        summary = await run_through_relay(tmp_path, emu, port, monkeypatch, server.api_url, 8)
        stats = emu.stats()
    finally:
        emu.stop()
        relay.terminate()
    table = results(summary["results"])
    assert {r["status"] for r in table} == {"completed"}
    assert limit_rejections(stats) == {}
    predictions = stats["predictions"]
    assert all(p["webhook"]["delivered"] for p in predictions)
    # Every end reached this process's event stream (the stream is shared and counts).
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        stream = event_stream()
    deadline = time.monotonic() + 60
    while stream.events < len(predictions):
        assert time.monotonic() < deadline, f"{stream.events} events for {len(predictions)}"
        await asyncio.sleep(0.05)
    assert "webhook" in [r["completion_seen_by"] for r in table]
    assert sum(p["status_calls"] for p in predictions) <= 2 * len(predictions)


async def test_relay_down_then_up_loses_nothing(
    server: PrefectServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    emu = emulator(time_scale=SCALE, latency_multiplier=EIGHT_SECONDS, seed=32)
    relay = None
    try:
        run = asyncio.ensure_future(
            run_through_relay(tmp_path, emu, port, monkeypatch, server.api_url, 12)
        )
        # Bring the relay up once FASHN has failed to reach it at least once.
        while not any(
            (p["webhook"] or {}).get("attempts", 0) >= 1 for p in emu.stats()["predictions"]
        ):
            assert not run.done(), "the run ended before any webhook was attempted"
            await asyncio.sleep(0.05)
        relay = await asyncio.to_thread(start_relay, server, port)
        summary = await run
        stats = emu.stats()
    finally:
        emu.stop()
        if relay is not None:
            relay.terminate()
    table = results(summary["results"])
    assert {r["status"] for r in table} == {"completed"}
    assert len(stats["predictions"]) == 12, "nothing submitted twice"
    assert limit_rejections(stats) == {}
    retried = [p for p in stats["predictions"] if p["webhook"]["attempts"] > 1]
    assert retried, "some deliveries failed while the relay was down"
    assert {r["completion_seen_by"] for r in table} <= {"webhook", "poll"}


def test_the_relay_answers_503_while_prefect_is_down(server: PrefectServer) -> None:
    port = free_port()
    down = f"http://127.0.0.1:{free_port()}/api"
    proc = server.spawn(
        [FASHN_PREFECT, "webhook-relay", "--listen", f"127.0.0.1:{port}"],
        f"relay-{port}.log",
        FASHN_PREFECT_WEBHOOK_SECRET=SECRET,
        PREFECT_API_URL=down,
        PREFECT_CLIENT_MAX_RETRIES="0",
    )
    url = callback_url(f"http://127.0.0.1:{port}", derived_token(SECRET))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.post(url, json={"id": "p-1", "status": "completed"}, timeout=30)
                break
            except httpx.TransportError:
                assert proc.poll() is None, server.log_tail(f"relay-{port}.log")
                assert time.monotonic() < deadline, "the relay did not start"
                time.sleep(0.1)
    finally:
        proc.terminate()
    assert answer.status_code == 503, "FASHN must retry: Prefect does not have the event"
