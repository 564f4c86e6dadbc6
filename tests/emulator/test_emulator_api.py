"""FASHN emulator over real loopback HTTP: auth, errors, progression, credits, stats, logs."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from _helpers import api_client, png_data_uri, wait_terminal

from fashn_prefect.api import specs
from fashn_prefect.emulator import DEFAULT_API_KEY, EmulatorServer

KEY = "fa-emulator-SECRET-api-key-123"
KEY_ID = "key-" + hashlib.sha256(KEY.encode()).hexdigest()[:8]
TERMINAL = ("completed", "failed")


IMG = png_data_uri()
IMG2 = png_data_uri((20, 30, 200))


@pytest.fixture
def server(fashn_emulator_factory: Callable[..., EmulatorServer]) -> EmulatorServer:
    return fashn_emulator_factory(api_keys=(KEY,), time_scale=0.01)


def test_default_fixture_uses_default_key(fashn_emulator: EmulatorServer) -> None:
    assert fashn_emulator.api_key == DEFAULT_API_KEY
    assert fashn_emulator.url.startswith("http://127.0.0.1:")
    with api_client(fashn_emulator) as client:
        assert client.get("/v1/credits").status_code == 200


def test_401_on_missing_bad_and_malformed_auth(server: EmulatorServer) -> None:
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        attempts = [
            client.post("/v1/run", json={"model_name": "tryon-v1.6", "inputs": {}}),
            client.get("/v1/status/x", headers={"Authorization": "Bearer fa-wrong-key"}),
            client.get("/v1/credits", headers={"Authorization": KEY}),
            client.get("/v1/credits", headers={"Authorization": "Basic abc"}),
        ]
    for response in attempts:
        assert response.status_code == 401
        assert response.json() == {
            "error": "UnauthorizedAccess",
            "message": "Invalid or inactive API key",
        }
    stats = server.stats()
    assert stats["rejected"]["UnauthorizedAccess"] == 4
    assert stats["requests"] == {}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"inputs": {}}).encode(), "model_name"),
        (json.dumps({"model_name": "tryon-v1.6"}).encode(), "inputs"),
        (json.dumps({"model_name": "tryon-v1.6", "inputs": []}).encode(), "inputs"),
    ],
)
def test_400_for_malformed_bodies(server: EmulatorServer, content: bytes, fragment: str) -> None:
    with api_client(server, KEY) as client:
        response = client.post(
            "/v1/run", content=content, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "BadRequest"
    assert fragment in body["message"]
    assert server.stats()["predictions"] == []


def test_400_names_invalid_fields_and_unknown_model(server: EmulatorServer) -> None:
    with api_client(server, KEY) as client:
        bad = client.post(
            "/v1/run",
            json={"model_name": "tryon-v1.6", "inputs": {"model_image": IMG, "category": "hat"}},
        )
        unknown = client.post("/v1/run", json={"model_name": "tryon-v9", "inputs": {}})
        hook = client.post(
            "/v1/run",
            params={"webhook_url": "ftp://x"},
            json={"model_name": "background-remove", "inputs": {"image": IMG}},
        )
    assert bad.status_code == 400
    message = bad.json()["message"]
    assert "garment_image" in message and "category" in message
    assert unknown.status_code == 400 and "tryon-max" in unknown.json()["message"]
    assert hook.status_code == 400 and "webhook_url" in hook.json()["message"]
    assert server.stats()["rejected"]["BadRequest"] == 3


def test_404_prediction_not_found_and_unknown_path(server: EmulatorServer) -> None:
    with api_client(server, KEY) as client:
        missing = client.get("/v1/status/00000000-0000-4000-8000-000000000000")
        path = client.get("/v1/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "NotFound", "message": "Prediction not found"}
    assert path.status_code == 404 and path.json()["error"] == "NotFound"
    assert server.stats()["rejected"]["NotFound"] == 2


def test_runtime_validation_mode_fails_prediction(
    fashn_emulator_factory: Callable[..., EmulatorServer],
) -> None:
    server = fashn_emulator_factory(validation="runtime")
    with api_client(server) as client:
        run = client.post(
            "/v1/run",
            json={"model_name": "tryon-v1.6", "inputs": {"model_image": IMG, "num_samples": 9}},
        )
        assert run.status_code == 200
        final = wait_terminal(client, run.json()["id"])
    body = final.json()
    assert body["status"] == "failed" and body["output"] is None
    assert body["error"]["name"] == "InputValidationError"
    assert "garment_image" in body["error"]["message"]
    assert "num_samples" in body["error"]["message"]
    assert final.headers["x-fashn-credits-used"] == "0"


def test_state_progression_in_order(
    fashn_emulator_factory: Callable[..., EmulatorServer],
) -> None:
    # Real time (the clock hardly moves while the test runs, however busy the machine);
    # the test moves it on by a second between polls, so every phase is seen.
    server = fashn_emulator_factory(api_keys=(KEY,), time_scale=1.0)
    order = ["starting", "in_queue", "processing", "completed"]
    with api_client(server, KEY) as client:
        run = client.post(
            "/v1/run",
            json={
                "model_name": "tryon-v1.6",
                "inputs": {"model_image": IMG, "garment_image": IMG2, "mode": "quality"},
            },
        )
        assert run.status_code == 200
        body = run.json()
        assert body["error"] is None and isinstance(body["id"], str)
        seen: list[str] = []
        while not seen or seen[-1] not in TERMINAL:
            response = client.get(f"/v1/status/{body['id']}")
            status = response.json()["status"]
            if status in ("starting", "in_queue", "processing"):
                assert "x-fashn-credits-used" not in response.headers
                assert response.json()["output"] is None
            if not seen or seen[-1] != status:
                seen.append(status)
            server.advance_clock(1.0)  # also keeps the calls under 50 per 10 emulated s
    assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen)
    assert seen[0] == "starting" and seen[-1] == "completed"
    assert "processing" in seen


def _expected(model: str, inputs: dict[str, Any]) -> int:
    return specs.estimate_credits(model, inputs)


def test_credits_header_and_balance_for_several_models(
    fashn_emulator_factory: Callable[..., EmulatorServer],
) -> None:
    server = fashn_emulator_factory(subscription_credits=5, on_demand_credits=100, time_scale=0.005)
    jobs: list[tuple[str, dict[str, Any]]] = [
        ("tryon-v1.6", {"model_image": IMG, "garment_image": IMG2, "num_samples": 2}),
        (
            "tryon-max",
            {
                "model_image": IMG,
                "product_image": IMG2,
                "generation_mode": "quality",
                "resolution": "2k",
            },
        ),
        ("product-to-model", {"product_image": IMG2, "face_reference": IMG}),
        ("background-remove", {"image": IMG}),
        ("image-to-video", {"image": IMG, "resolution": "480p", "duration": 10}),
    ]
    expected_total = 0
    with api_client(server) as client:
        assert client.get("/v1/credits").json() == {
            "credits": {"total": 105, "subscription": 5, "on_demand": 100}
        }
        submitted = []
        for model, inputs in jobs:
            run = client.post("/v1/run", json={"model_name": model, "inputs": inputs})
            assert run.status_code == 200, run.text
            submitted.append((run.json()["id"], _expected(model, inputs)))
        failed = client.post(
            "/v1/run",
            json={
                "model_name": "background-remove",
                "inputs": {"image": IMG, "note": "emulator-fail:PoseError"},
            },
        )
        for pid, expected in submitted:
            final = wait_terminal(client, pid)
            assert final.json()["status"] == "completed", final.json()
            assert int(final.headers["x-fashn-credits-used"]) == expected
            expected_total += expected
        assert expected_total == 2 + 4 + 4 + 1 + 2
        final = wait_terminal(client, failed.json()["id"])
        assert final.json()["status"] == "failed"
        assert final.json()["error"]["name"] == "PoseError"
        assert final.headers["x-fashn-credits-used"] == "0"
        balance = client.get("/v1/credits").json()["credits"]
    assert balance == {
        "total": 105 - expected_total,
        "subscription": 0,
        "on_demand": 105 - expected_total,
    }
    stats = server.stats()
    assert stats["credits_charged"] == expected_total
    assert [p["credits"] for p in stats["predictions"]] == [2, 4, 4, 1, 2, 0]


def test_stats_document(server: EmulatorServer) -> None:
    inputs = {"image": IMG}
    with api_client(server, KEY) as client:
        pid = client.post(
            "/v1/run", json={"model_name": "background-remove", "inputs": inputs}
        ).json()["id"]
        wait_terminal(client, pid)
        client.get("/v1/credits")
        client.get("/v1/status/unknown")
    stats = server.stats()
    raw = json.dumps(stats)
    assert KEY not in raw
    assert stats["requests"][KEY_ID]["run"] == 1
    assert stats["requests"][KEY_ID]["credits"] == 1
    assert stats["requests"][KEY_ID]["status"] >= 2
    assert stats["in_flight"] == 0 and stats["peak_in_flight"] == 1
    assert stats["credits_charged"] == 1
    assert stats["credits"]["total"] == 1_000_000 - 1
    (prediction,) = stats["predictions"]
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    assert prediction["id"] == pid
    assert prediction["key_id"] == KEY_ID
    assert prediction["model_name"] == "background-remove"
    assert prediction["inputs_hash"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert prediction["status"] == "completed" and prediction["error"] is None
    assert prediction["credits"] == 1 and prediction["output_count"] == 1
    assert prediction["completed_at"] > prediction["created_at"]
    low, high = specs.expected_latency("background-remove", inputs)
    assert low - 0.01 <= prediction["duration"] <= high + 5
    assert prediction["webhook"] is None
    assert set(stats["faults_injected"]) >= {"run_5xx", "status_5xx", "runtime"}


def test_in_flight_and_peak(fashn_emulator_factory: Callable[..., EmulatorServer]) -> None:
    # A slower clock than the other tests': three submissions must land before the first
    # prediction can finish, even on a busy machine (tryon-max runs for tens of emu s).
    server = fashn_emulator_factory(api_keys=(KEY,), time_scale=0.1, status_limit=(10_000, 10.0))
    with api_client(server, KEY) as client:
        ids = [
            client.post(
                "/v1/run",
                json={
                    "model_name": "tryon-max",
                    "inputs": {"model_image": IMG, "product_image": IMG2},
                },
            ).json()["id"]
            for _ in range(3)
        ]
        assert server.stats()["in_flight"] == 3
        for pid in ids:
            wait_terminal(client, pid)
    stats = server.stats()
    assert stats["in_flight"] == 0 and stats["peak_in_flight"] == 3


def test_output_urls_follow_the_request_host(server: EmulatorServer) -> None:
    with api_client(server, KEY) as client:
        pid = client.post(
            "/v1/run", json={"model_name": "background-remove", "inputs": {"image": IMG}}
        ).json()["id"]
        wait_terminal(client, pid)
        body = client.get(f"/v1/status/{pid}", headers={"Host": "fashn.test:9999"}).json()
        direct = client.get(f"/v1/status/{pid}").json()
    assert body["output"] == [f"http://fashn.test:9999/cdn/{pid}/output_0.png"]
    assert direct["output"] == [f"{server.url}/cdn/{pid}/output_0.png"]


def test_api_key_never_logged(server: EmulatorServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "fa-wrong-SECRET-guess-999"
    with api_client(server, KEY) as client:
        pid = client.post(
            "/v1/run",
            params={"webhook_url": "http://127.0.0.1:9/hook"},
            json={"model_name": "background-remove", "inputs": {"image": IMG}},
        ).json()["id"]
        wait_terminal(client, pid)
        client.get("/v1/credits", headers={"Authorization": f"Bearer {wrong}"})
    time.sleep(0.2)
    assert caplog.records, "expected some emulator log records"
    assert KEY not in caplog.text and wrong not in caplog.text
    assert KEY_ID in caplog.text


def test_malformed_image_url_fails_at_run_time_with_image_load_error(
    server: EmulatorServer,
) -> None:
    # The docs show "Error loading model image: Invalid URL format" as a runtime
    # ImageLoadError (status "failed"), not a 400 at submission.
    with api_client(server, KEY) as client:
        run = client.post(
            "/v1/run",
            json={
                "model_name": "tryon-v1.6",
                "inputs": {"model_image": "not a url", "garment_image": IMG},
            },
        )
        assert run.status_code == 200
        final = wait_terminal(client, run.json()["id"])
    body = final.json()
    assert (body["status"], body["output"]) == ("failed", None)
    assert body["error"] == {
        "name": "ImageLoadError",
        "message": "Error loading model image: Invalid URL format",
    }
    assert final.headers["x-fashn-credits-used"] == "0"
