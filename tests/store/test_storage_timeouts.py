"""A store that accepts connections but never answers cannot hang a run or double-charge a row.

S3 is a real moto server behind a small loopback proxy that swallows chosen requests (a
store that accepts the connection and never answers). Every storage step the run waits
for is bounded by ``storage_timeout``; the emulator's record of predictions is the ground
truth for "never submitted twice".
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import TIME_SCALE, emulator, results, results_files, submissions, write_manifest

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorServer
from fashn_prefect.errors import StorageTimeout
from fashn_prefect.flows import run_manifest
from fashn_prefect.run.outcome import summary_of
from fashn_prefect.store.fs import atomic_write, bounded, filesystem, is_storage_transport_error

pytestmark = pytest.mark.timeout(90)
LEDGER = "/ledger/"  # in the request line of every ledger write (PUT /bucket/out/ledger/...)


class StallProxy:
    """Forward loopback TCP to S3, but swallow (never answer) chosen requests.

    After :meth:`stall` the requests whose request line contains ``marker`` pass
    ``after`` times, then each one is swallowed and its connection never answers again.
    All sockets are closed at exit, so abandoned clients fail fast afterwards.
    """

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.marker: str | None = None
        self.passes = 0
        self.swallowed = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self, marker: str | None, after: int = 0) -> None:
        """Swallow requests matching ``marker`` after ``after`` have passed (None: stop)."""
        with self._lock:
            self.marker, self.passes = marker, after

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _swallow(self, request_line: bytes) -> bool:
        with self._lock:
            if self.marker is None or self.marker.encode() not in request_line:
                return False
            if self.passes > 0:
                self.passes -= 1
                return False
            self.swallowed += 1
            return True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(self.upstream)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while chunk := client.recv(65536):
                method = chunk[:8].split(b" ")[0]
                is_request = method in (b"GET", b"PUT", b"POST", b"HEAD", b"DELETE")
                if is_request and self._swallow(chunk.split(b"\r\n", 1)[0]):
                    while client.recv(65536):  # never answer this connection again
                        pass
                    return
                upstream.sendall(chunk)
        except OSError:
            pass

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(65536):
                client.sendall(data)
        except OSError:
            pass


@pytest.fixture
def proxy(moto_server: str) -> Iterator[StallProxy]:
    server = StallProxy(moto_server)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def stalled_s3(proxy: StallProxy, s3_bucket: str) -> tuple[str, dict[str, Any]]:
    """``(output URL, storage_options)`` for a bucket reached through the proxy."""
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": proxy.url},
        "config_kwargs": {"read_timeout": 1, "connect_timeout": 1, "retries": {"max_attempts": 1}},
        "use_listings_cache": False,
        "skip_instance_cache": True,
    }
    return f"{s3_bucket}/out", options


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    with emulator(seed=5) as server:
        yield server


def _manifest(tmp_path: Path, count: int = 1) -> str:
    rows = [
        {"row_id": f"row-{i}", "model_name": "model-create", "prompt": f"a red dress {i}"}
        for i in range(count)
    ]
    return write_manifest(str(tmp_path / "manifest.csv"), rows)


async def _run(emu: EmulatorServer, manifest: str, output: str, **options: Any) -> dict[str, Any]:
    run = run_manifest(
        manifest=manifest,
        output=output,
        credentials=FashnCredentials(api_key=emu.api_key, base_url=emu.url),
        time_scale=TIME_SCALE,
        shared_limits=False,
        check_balance=False,
        **options,
    )
    return dict(await summary_of(run))  # the summary, also of a run that ended Failed


async def test_a_write_to_a_store_that_never_answers_times_out_as_an_oserror(
    proxy: StallProxy, stalled_s3: tuple[str, dict[str, Any]]
) -> None:
    output, options = stalled_s3
    fs, root = filesystem(output, **options)
    proxy.stall("/never-answers")

    with pytest.raises(StorageTimeout, match=r"within 0\.5 s while writing a test object") as info:
        await asyncio.wait_for(
            bounded(0.5, "writing a test object", atomic_write, fs, f"{root}/never-answers", b"x"),
            timeout=30,  # the guard this test is about: without it this await never returns
        )
    assert isinstance(info.value, OSError)  # so Prefect task retries treat it as transient
    # The abandoned write really went to the store and hung there (on a loaded machine it
    # may reach the proxy only after the 0.5 s guard has fired).
    deadline = time.monotonic() + 15
    while proxy.swallowed < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert proxy.swallowed >= 1


def test_botocore_connection_and_timeout_errors_count_as_transient_storage_errors() -> None:
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    url = "http://127.0.0.1:1"
    assert is_storage_transport_error(EndpointConnectionError(endpoint_url=url))
    assert is_storage_transport_error(ConnectTimeoutError(endpoint_url=url))
    assert is_storage_transport_error(ReadTimeoutError(endpoint_url=url))
    assert is_storage_transport_error(ConnectionClosedError(endpoint_url=url))
    assert not is_storage_transport_error(NoCredentialsError())
    assert not is_storage_transport_error(ValueError("not storage"))


@pytest.mark.usefixtures("prefect_harness")
async def test_a_row_whose_intent_cannot_be_recorded_is_never_submitted(
    emu: EmulatorServer,
    proxy: StallProxy,
    stalled_s3: tuple[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    output, options = stalled_s3
    proxy.stall(LEDGER)  # every ledger write is swallowed; everything else works

    summary = await _run(
        emu,
        _manifest(tmp_path, count=2),
        output,
        storage_options=options,
        storage_timeout=4.0,  # planning must fit in it on a loaded machine
        retries=1,
        retry_delay=0.0,
    )

    rows = results(summary["results"], options)
    assert [(r["status"], r["error_name"]) for r in rows] == [("failed", "StorageTimeout")] * 2
    assert all(r["prediction_ids"] == [] and not r["ambiguous"] for r in rows)
    assert "storage did not answer within 4 s" in rows[0]["error_message"]
    assert submissions(emu.stats()) == 0  # no recorded intent, no request
    # Each row's first write hangs; its retry queues behind that write and times out too.
    assert proxy.swallowed >= 2


@pytest.mark.usefixtures("prefect_harness")
async def test_a_row_whose_submission_cannot_be_recorded_is_not_submitted_again(
    emu: EmulatorServer,
    proxy: StallProxy,
    stalled_s3: tuple[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    output, options = stalled_s3
    manifest = _manifest(tmp_path)
    proxy.stall(LEDGER, after=1)  # the intent is written; every later ledger write hangs

    first = await _run(
        emu,
        manifest,
        output,
        storage_options=options,
        storage_timeout=4.0,  # planning must fit in it on a loaded machine
        retries=2,
        retry_delay=0.0,
    )

    (row,) = results(first["results"], options)
    assert row["status"] == "failed" and row["error_name"] == "StorageTimeout"
    assert len(row["prediction_ids"]) == 1  # task retries resumed it, never resent it
    assert submissions(emu.stats()) == 1

    # Storage is back: a re-run finds the row from the ledger and still never resubmits it.
    proxy.stall(None)
    second = await _run(emu, manifest, output, storage_options=options, storage_timeout=10.0)
    (again,) = results(second["results"], options)
    assert submissions(emu.stats()) == 1
    # Every write after the intent was swallowed, so the ledger still says "submitting":
    # the prediction's id never reached storage and the row is reported as ambiguous.
    assert (again["status"], again["error_name"], again["ambiguous"]) == (
        "failed",
        "AmbiguousSubmission",
        True,
    )
    assert again["prediction_ids"] == [] and again["attempts"] == 1


@pytest.mark.usefixtures("prefect_harness")
async def test_a_results_table_that_cannot_be_written_fails_the_run_and_a_rerun_recovers(
    emu: EmulatorServer,
    proxy: StallProxy,
    stalled_s3: tuple[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    output, options = stalled_s3
    manifest = _manifest(tmp_path)
    proxy.stall("/results/")

    with pytest.raises(StorageTimeout, match="while writing the results table"):
        # planning must fit in the timeout on a loaded machine; the stalled write never does
        await _run(emu, manifest, output, storage_options=options, storage_timeout=4.0)
    assert submissions(emu.stats()) == 1

    proxy.stall(None)
    summary = await _run(emu, manifest, output, storage_options=options, storage_timeout=10.0)
    (row,) = results(summary["results"], options)
    if row["status"] == "skipped":
        # The first run stopped waiting, but s3fs's own retry of the abandoned write can
        # reach the store once the stall is lifted: that table then holds the completed row
        # and the re-run rightly skips it. Either way the row completed exactly once.
        earlier = [
            r
            for path in results_files(output, options)
            for r in results(f"s3://{path}", options)
            if r["status"] == "completed"
        ]
        assert len(earlier) == 1, earlier
        row = earlier[0]
    assert row["status"] == "completed" and len(row["prediction_ids"]) == 1
    assert submissions(emu.stats()) == 1  # recovered from the ledger, not submitted again


@pytest.mark.usefixtures("prefect_harness")
async def test_a_row_whose_outputs_cannot_be_stored_retries_the_collect_without_resubmitting(
    emu: EmulatorServer,
    proxy: StallProxy,
    stalled_s3: tuple[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    output, options = stalled_s3
    manifest = _manifest(tmp_path)
    proxy.stall("/images/")  # the first output write hangs; the task retry finds storage back

    async def lift_after_first_stall() -> None:
        while proxy.swallowed < 1:
            await asyncio.sleep(0.05)
        proxy.stall(None)

    lifter = asyncio.create_task(lift_after_first_stall())
    summary = await _run(
        emu,
        manifest,
        output,
        storage_options=options,
        storage_timeout=4.0,  # planning must fit in it on a loaded machine
        retries=2,
        retry_delay=0.0,
    )
    await asyncio.wait_for(lifter, timeout=5)

    (row,) = results(summary["results"], options)
    assert row["status"] == "completed" and row["output_uris"]
    assert row["attempts"] == 1 and len(row["prediction_ids"]) == 1
    assert submissions(emu.stats()) == 1  # the retry collected the recorded prediction


@pytest.mark.usefixtures("prefect_harness")
async def test_a_row_whose_outputs_never_store_fails_and_a_rerun_collects_without_resubmitting(
    emu: EmulatorServer,
    proxy: StallProxy,
    stalled_s3: tuple[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    output, options = stalled_s3
    manifest = _manifest(tmp_path)
    proxy.stall("/images/")  # every output write hangs, on every task retry

    first = await _run(
        emu,
        manifest,
        output,
        storage_options=options,
        storage_timeout=4.0,  # planning must fit in it on a loaded machine
        retries=1,
        retry_delay=0.0,
    )

    (row,) = results(first["results"], options)
    assert (row["status"], row["error_name"]) == ("failed", "StorageTimeout")
    assert proxy.swallowed >= 2  # the first try and the retry both tried to store
    assert submissions(emu.stats()) == 1  # the retry never submitted a second prediction
    assert row["credits_charged"] > 0  # charged once, and reported

    proxy.stall(None)
    second = await _run(emu, manifest, output, storage_options=options, storage_timeout=10.0)
    (again,) = results(second["results"], options)
    assert again["status"] == "completed" and again["output_uris"]
    assert submissions(emu.stats()) == 1  # resumed from the ledger, not submitted again
