"""The official ``fashn`` SDK 0.9.0 driving the emulator over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import fashn
import pytest
from _helpers import png_data_uri
from fashn import AsyncFashn, Fashn

from fashn_prefect.api import specs
from fashn_prefect.emulator import EmulatorServer

PERSON = png_data_uri((180, 120, 90), (48, 72))
GARMENT = png_data_uri((20, 40, 200), (48, 72))
CASES: list[tuple[str, dict[str, Any]]] = [
    ("tryon-v1.6", {"model_image": PERSON, "garment_image": GARMENT, "num_samples": 2}),
    ("tryon-max", {"model_image": PERSON, "product_image": GARMENT, "resolution": "2k"}),
    ("product-to-model", {"product_image": GARMENT, "generation_mode": "quality"}),
    ("background-remove", {"image": PERSON}),
]


@pytest.fixture
def server(fashn_emulator_factory: Callable[..., EmulatorServer]) -> EmulatorServer:
    return fashn_emulator_factory(time_scale=0.005)


@pytest.fixture
def sdk(server: EmulatorServer) -> Iterator[Fashn]:
    client = Fashn(api_key=server.api_key, base_url=server.url, max_retries=0)
    yield client
    client.close()


@pytest.mark.parametrize(("model", "inputs"), CASES, ids=[c[0] for c in CASES])
def test_subscribe_completes_with_credits(
    sdk: Fashn, server: EmulatorServer, model: str, inputs: dict[str, Any]
) -> None:
    enqueued: list[str] = []
    updates: list[str] = []
    result = sdk.predictions.subscribe(  # type: ignore[call-overload]
        model_name=model,
        inputs=inputs,
        poll_interval=10,  # milliseconds
        timeout=30_000,
        on_enqueued=enqueued.append,
        on_queue_update=lambda status: updates.append(status.status),
    )
    assert result.status == "completed", result
    assert result.error is None
    assert enqueued == [result.id]
    assert updates[-1] == "completed"
    assert result.credits_used == specs.estimate_credits(model, inputs)
    assert result.output and len(result.output) == specs.output_count(model, inputs)
    assert all(url.startswith(f"{server.url}/cdn/{result.id}/output_") for url in result.output)


def test_run_then_status(sdk: Fashn) -> None:
    started = sdk.predictions.run(
        model_name="background-remove", inputs={"image": PERSON, "return_base64": True}
    )
    assert isinstance(started.id, str) and started.error is None
    status = sdk.predictions.status(started.id)
    assert status.id == started.id
    assert status.status in ("starting", "in_queue", "processing", "completed")
    raw = sdk.predictions.with_raw_response.status(started.id)
    assert raw.http_request.headers["authorization"].startswith("Bearer ")


def test_subscribe_failed_prediction(sdk: Fashn) -> None:
    result = sdk.predictions.subscribe(  # type: ignore[call-overload]
        model_name="tryon-v1.6",
        inputs={"model_image": PERSON, "garment_image": GARMENT, "note": "emulator-fail:PoseError"},
        poll_interval=10,
    )
    assert result.status == "failed"
    assert result.error is not None and result.error.name == "PoseError"
    assert result.output is None
    assert result.credits_used == 0


async def test_async_subscribe(server: EmulatorServer) -> None:
    async with AsyncFashn(api_key=server.api_key, base_url=server.url, max_retries=0) as client:
        result = await client.predictions.subscribe(
            model_name="tryon-max",
            inputs={"model_image": PERSON, "product_image": GARMENT},
            poll_interval=10,
        )
    assert result.status == "completed"
    assert result.credits_used == specs.estimate_credits(
        "tryon-max", {"model_image": PERSON, "product_image": GARMENT}
    )


def test_sdk_error_classes(server: EmulatorServer, sdk: Fashn) -> None:
    with (
        Fashn(api_key="fa-wrong", base_url=server.url, max_retries=0) as bad,
        pytest.raises(fashn.AuthenticationError) as auth,
    ):
        bad.predictions.run(model_name="background-remove", inputs={"image": PERSON})
    assert auth.value.status_code == 401
    assert auth.value.body == {
        "error": "UnauthorizedAccess",
        "message": "Invalid or inactive API key",
    }

    with pytest.raises(fashn.BadRequestError) as bad_request:
        sdk.predictions.run(model_name="tryon-v1.6", inputs={"model_image": PERSON})  # type: ignore[call-overload]
    assert bad_request.value.body["error"] == "BadRequest"  # type: ignore[index]
    assert "garment_image" in bad_request.value.body["message"]  # type: ignore[index]

    with pytest.raises(fashn.NotFoundError) as not_found:
        sdk.predictions.status("no-such-prediction")
    assert not_found.value.body == {"error": "NotFound", "message": "Prediction not found"}

    server.set_faults(rate_limit_burst=1)
    with pytest.raises(fashn.RateLimitError) as limited:
        sdk.predictions.run(model_name="background-remove", inputs={"image": PERSON})
    assert limited.value.body["error"] == "RateLimitExceeded"  # type: ignore[index]

    server.set_faults(run_5xx=1.0)
    with pytest.raises(fashn.InternalServerError):
        sdk.predictions.run(model_name="background-remove", inputs={"image": PERSON})


def test_sdk_retries_honour_retry_after(server: EmulatorServer) -> None:
    server.set_faults(rate_limit_burst=1)
    with Fashn(api_key=server.api_key, base_url=server.url, max_retries=1) as client:
        started = client.predictions.run(model_name="background-remove", inputs={"image": PERSON})
    assert started.id
    stats = server.stats()
    assert stats["faults_injected"]["rate_limit_burst"] == 1
    assert len(stats["predictions"]) == 1
