"""Every fault knob of the emulator, observed over real loopback HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from _helpers import api_client, png_data_uri, wait_terminal

from fashn_prefect.emulator import EmulatorServer, FaultConfig

IMG = png_data_uri((90, 20, 160), (40, 60))
REMOVE = {"model_name": "background-remove", "inputs": {"image": IMG}}


@pytest.fixture
def server(fashn_emulator_factory: Callable[..., EmulatorServer]) -> EmulatorServer:
    return fashn_emulator_factory(time_scale=0.01)


def test_run_5xx_creates_nothing(server: EmulatorServer) -> None:
    server.set_faults(run_5xx=1.0)
    with api_client(server) as client:
        response = client.post("/v1/run", json=REMOVE)
        assert response.status_code == 500
        assert response.json() == {"error": "InternalServerError", "message": "Server error"}
        assert server.stats()["predictions"] == []
        server.set_faults(run_5xx=0.0)
        assert client.post("/v1/run", json=REMOVE).status_code == 200
    stats = server.stats()
    assert stats["faults_injected"]["run_5xx"] == 1
    assert len(stats["predictions"]) == 1


def test_status_5xx_via_http_control(server: EmulatorServer) -> None:
    with api_client(server) as client:
        pid = client.post("/v1/run", json=REMOVE).json()["id"]
        put = client.put("/_emulator/faults", json={"status_5xx": 1.0})
        assert put.status_code == 200 and put.json()["status_5xx"] == 1.0
        assert client.get("/_emulator/faults").json()["run_5xx"] == 0.0  # PUT merges
        response = client.get(f"/v1/status/{pid}")
        assert response.status_code == 500
        assert response.json()["error"] == "InternalServerError"
        client.put("/_emulator/faults", json={"status_5xx": 0})
        assert client.get(f"/v1/status/{pid}").status_code == 200
        bad = client.put("/_emulator/faults", json={"no_such_fault": 1})
        assert bad.status_code == 400
    assert server.stats()["faults_injected"]["status_5xx"] == 1


def test_drop_connection_on_run_creates_prediction_first(server: EmulatorServer) -> None:
    server.set_faults(drop_connection=1.0)
    with api_client(server) as client, pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.post("/v1/run", json=REMOVE)
    stats = server.stats()
    assert stats["faults_injected"]["drop_connection"] == 1
    assert len(stats["predictions"]) == 1  # the client cannot know, but it exists
    server.set_faults(drop_connection=0.0)
    with api_client(server) as client:
        assert client.post("/v1/run", json=REMOVE).status_code == 200


def test_request_fault_marker_hits_only_the_first_run_of_those_inputs(
    server: EmulatorServer,
) -> None:
    server.set_faults(slow_seconds=5.0)
    dropped = {
        "model_name": "edit",
        "inputs": {"image": IMG, "prompt": "emulator-fault:drop_connection"},
    }
    slow = {
        "model_name": "edit",
        "inputs": {"image": IMG, "prompt": "x emulator-fault:slow_response"},
    }
    with api_client(server) as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.post("/v1/run", json=dropped)
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/run", json=slow, timeout=0.5)
        # The same inputs again: answered at once (a transient fault), each a new prediction.
        assert client.post("/v1/run", json=dropped).status_code == 200
        assert client.post("/v1/run", json=slow, timeout=2.0).status_code == 200
        assert client.post("/v1/run", json=REMOVE).status_code == 200  # unmarked inputs
    stats = server.stats()
    assert stats["faults_injected"]["drop_connection"] == 1
    assert stats["faults_injected"]["slow_response"] == 1
    assert len(stats["predictions"]) == 5  # the faulted requests created theirs first


def test_drop_connection_on_status(server: EmulatorServer) -> None:
    with api_client(server) as client:
        pid = client.post("/v1/run", json=REMOVE).json()["id"]
        server.set_faults(drop_connection=1.0)
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.get(f"/v1/status/{pid}")
        server.set_faults(drop_connection=0.0)
        assert client.get(f"/v1/status/{pid}").status_code == 200  # server still healthy
    assert server.stats()["faults_injected"]["drop_connection"] == 1


def test_slow_response_delays_after_creating(
    fashn_emulator_factory: Callable[..., EmulatorServer],
) -> None:
    server = fashn_emulator_factory(
        time_scale=0.01, faults=FaultConfig(slow_response=1.0, slow_seconds=0.4)
    )
    result: dict[str, Any] = {}

    def submit() -> None:
        started = time.monotonic()
        with api_client(server) as client:
            result["response"] = client.post("/v1/run", json=REMOVE)
        result["elapsed"] = time.monotonic() - started

    worker = threading.Thread(target=submit)
    worker.start()
    deadline = time.monotonic() + 5
    while not server.stats()["predictions"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert worker.is_alive(), "prediction should exist while the response is still delayed"
    worker.join()
    assert result["response"].status_code == 200
    assert result["elapsed"] >= 0.4
    assert server.stats()["faults_injected"]["slow_response"] == 1


def test_hold_run_answers_nothing_until_released(server: EmulatorServer) -> None:
    """The prediction exists while its POST is held; the answer comes once the switch is off."""
    server.set_faults(hold_run=True)
    result: dict[str, Any] = {}

    def submit() -> None:
        with api_client(server) as client:
            result["response"] = client.post("/v1/run", json=REMOVE)

    worker = threading.Thread(target=submit)
    worker.start()
    deadline = time.monotonic() + 5
    while not server.stats()["faults_injected"]["hold_run"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert len(server.stats()["predictions"]) == 1
    assert worker.is_alive(), "the POST should still be waiting for its answer"
    server.set_faults(hold_run=False)
    worker.join(timeout=5)
    assert result["response"].status_code == 200
    assert result["response"].json()["id"] == server.stats()["predictions"][0]["id"]


def test_hold_run_marker_holds_until_the_client_goes_away(server: EmulatorServer) -> None:
    marked = {"model_name": "edit", "inputs": {"image": IMG, "prompt": "emulator-fault:hold_run"}}
    with (
        httpx.Client(base_url=server.url, timeout=0.3, trust_env=False) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post("/v1/run", json=marked, headers={"Authorization": f"Bearer {server.api_key}"})
    assert server.stats()["faults_injected"]["hold_run"] == 1
    with api_client(server) as client:  # the same inputs again: answered at once
        assert client.post("/v1/run", json=marked).status_code == 200
    assert len(server.stats()["predictions"]) == 2


def test_refund_credits_gives_credits_back_once(server: EmulatorServer) -> None:
    def unspent() -> int:
        """The balance plus every charge: only a refund moves it."""
        stats = server.stats()
        return int(stats["credits"]["total"] + stats["credits_charged"])

    before = unspent()
    server.set_faults(refund_credits=3)
    with api_client(server) as client:
        client.post("/v1/run", json=REMOVE)
        assert unspent() == before + 3
        assert client.get("/_emulator/faults").json()["refund_credits"] == 0
        client.post("/v1/run", json=REMOVE)
    assert unspent() == before + 3
    assert server.stats()["faults_injected"]["refund_credits"] == 1


def test_runtime_failures(server: EmulatorServer) -> None:
    server.set_faults(runtime_failures={"PipelineError": 1.0})
    with api_client(server) as client:
        pid = client.post("/v1/run", json=REMOVE).json()["id"]
        final = wait_terminal(client, pid, tolerate_errors=True)
    body = final.json()
    assert body["status"] == "failed" and body["output"] is None
    assert body["error"]["name"] == "PipelineError" and body["error"]["message"]
    assert final.headers["x-fashn-credits-used"] == "0"
    stats = server.stats()
    assert stats["faults_injected"]["runtime"] == {"PipelineError": 1}
    assert stats["credits_charged"] == 0
    assert stats["predictions"][0]["error"]["name"] == "PipelineError"


def test_runtime_failures_are_seeded(fashn_emulator_factory: Callable[..., EmulatorServer]) -> None:
    patterns = []
    for _ in range(2):
        server = fashn_emulator_factory(
            time_scale=0.01,
            seed=7,
            max_in_flight=100,
            faults=FaultConfig(runtime_failures={"PipelineError": 0.5}),
        )
        with api_client(server) as client:
            ids = [client.post("/v1/run", json=REMOVE).json()["id"] for _ in range(8)]
            patterns.append(
                [wait_terminal(client, pid, tolerate_errors=True).json()["status"] for pid in ids]
            )
    assert patterns[0] == patterns[1]
    assert set(patterns[0]) == {"completed", "failed"}


def test_failure_marker(fashn_emulator_factory: Callable[..., EmulatorServer]) -> None:
    server = fashn_emulator_factory(time_scale=0.01, faults=FaultConfig(failure_marker="boom:"))
    with api_client(server) as client:
        pid = client.post(
            "/v1/run",
            json={
                "model_name": "tryon-v1.6",
                "inputs": {
                    "model_image": IMG,
                    "garment_image": "http://127.0.0.1:1/x.png?boom:PoseError",
                },
            },
        ).json()["id"]
        ignored = client.post(
            "/v1/run",
            json={
                "model_name": "edit",
                "inputs": {"image": IMG, "prompt": "emulator-fail:PoseError"},
            },
        ).json()["id"]
        failed = wait_terminal(client, pid, tolerate_errors=True).json()
        ok = wait_terminal(client, ignored, tolerate_errors=True).json()
    assert failed["error"]["name"] == "PoseError"
    assert ok["status"] == "completed"  # the default marker was replaced
    assert server.stats()["faults_injected"]["runtime"] == {"PoseError": 1}


def test_rate_limit_burst(server: EmulatorServer) -> None:
    server.set_faults(rate_limit_burst=2)
    with api_client(server) as client:
        first = client.get("/v1/credits")
        second = client.post("/v1/run", json=REMOVE)
        third = client.get("/v1/credits")
    assert first.status_code == second.status_code == 429
    assert first.json()["error"] == "RateLimitExceeded"
    assert float(first.headers["Retry-After"]) > 0
    assert third.status_code == 200
    stats = server.stats()
    assert stats["faults_injected"]["rate_limit_burst"] == 2
    assert stats["rejected"]["RateLimitExceeded"] == 2
    assert stats["predictions"] == []


def test_cdn_gone(server: EmulatorServer) -> None:
    with api_client(server) as client:
        pid = client.post("/v1/run", json=REMOVE).json()["id"]
        url = wait_terminal(client, pid, tolerate_errors=True).json()["output"][0]
        server.set_faults(cdn_gone=1.0)
        assert client.get(url).status_code == 404
        server.set_faults(cdn_gone=0.0)
        assert client.get(url).status_code == 404  # sticky per output
    assert server.stats()["faults_injected"]["cdn_gone"] == 1


REAL_API_VARIANTS = (
    "dict_outputs",
    "drop_outputs",
    "omit_retry_after",
    "zero_retry_after",
    "omit_credits_header",
    "forget_after",
    "canceled",
    "time_out",
    "octet_stream_cdn",
    "account_concurrency",
    "accept_unknown_models",
)


def test_real_api_variants_are_off_by_default_and_listed_by_the_cli_help() -> None:
    from typer.testing import CliRunner

    from fashn_prefect.cli import app
    from fashn_prefect.emulator import FaultConfig

    defaults = FaultConfig()
    assert not any(getattr(defaults, name) for name in REAL_API_VARIANTS)
    shown = CliRunner().invoke(app, ["emulator", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    for name in REAL_API_VARIANTS:
        assert f"--{name.replace('_', '-')}" in shown.output


def test_real_api_variants_shape_the_answers(
    fashn_emulator_factory: Callable[..., Any],
) -> None:
    server = fashn_emulator_factory(time_scale=0.01)
    server.set_faults(
        dict_outputs=True, omit_credits_header=True, octet_stream_cdn=True, rate_limit_burst=1
    )
    with api_client(server) as client:
        refused = client.post("/v1/run", json=REMOVE)
        assert refused.status_code == 429 and "retry-after" in refused.headers
        server.set_faults(omit_retry_after=True, rate_limit_burst=1)
        assert "retry-after" not in client.post("/v1/run", json=REMOVE).headers
        pid = client.post("/v1/run", json=REMOVE).json()["id"]
        for _ in range(500):
            done = client.get(f"/v1/status/{pid}")
            if done.json()["status"] == "completed":
                break
            time.sleep(0.01)
        body = done.json()
        assert list(body["output"]) == ["images"] and len(body["output"]["images"]) == 1
        assert "x-fashn-credits-used" not in done.headers
        image = client.get(body["output"]["images"][0])
        assert image.headers["content-type"] == "application/octet-stream"
        assert image.content.startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="true or false"):
        server.set_faults(dict_outputs=1)  # switches take true/false only
