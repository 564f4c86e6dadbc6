"""The emulator's documented limits, really exceeded over loopback HTTP (time-scaled windows)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from _helpers import api_client, png_data_uri

from fashn_prefect.emulator import EmulatorServer
from fashn_prefect.emulator.limits import SlidingWindowLimiter

IMG = png_data_uri((10, 120, 40), (40, 60))
REMOVE = {"model_name": "background-remove", "inputs": {"image": IMG}}
SLOW = {
    "model_name": "tryon-max",
    "inputs": {
        "model_image": IMG,
        "product_image": IMG,
        "generation_mode": "quality",
        "resolution": "4k",
    },
}


# A million real seconds per emulated second: the emulated clock stands still during a
# test, so every request falls into one window however slowly the machine runs; tests
# move the clock with advance_clock.
FROZEN = 1e6


def test_sliding_window_limiter_unit() -> None:
    limiter = SlidingWindowLimiter(2, 10.0)
    assert limiter.check("k", 0.0) is None
    assert limiter.check("k", 1.0) is None
    assert limiter.check("k", 2.0) == pytest.approx(8.0)
    assert limiter.check("other", 2.0) is None
    assert limiter.check("k", 10.5) is None  # the hit at 0.0 left the window
    assert limiter.check("k", 10.6) == pytest.approx(0.4)


def test_run_limit_50_per_minute(fashn_emulator_factory: Callable[..., EmulatorServer]) -> None:
    server = fashn_emulator_factory(time_scale=FROZEN, max_in_flight=1000)
    with api_client(server) as client:
        codes = [client.post("/v1/run", json=REMOVE) for _ in range(51)]
        assert [r.status_code for r in codes[:50]] == [200] * 50
        rejected = codes[50]
        assert rejected.status_code == 429
        assert rejected.json() == {"error": "RateLimitExceeded", "message": "Too many requests"}
        # Retry-After is in real seconds: the whole 60 s window, on this time scale.
        retry_after = float(rejected.headers["Retry-After"])
        assert retry_after == pytest.approx(60 * FROZEN, rel=1e-3)
        server.advance_clock(60)
        assert client.post("/v1/run", json=REMOVE).status_code == 200
    stats = server.stats()
    assert stats["rejected"]["RateLimitExceeded"] == 1
    assert len(stats["predictions"]) == 51


def test_status_limit_50_per_10s(fashn_emulator_factory: Callable[..., EmulatorServer]) -> None:
    server = fashn_emulator_factory(time_scale=FROZEN)
    with api_client(server) as client:
        pid = client.post("/v1/run", json=REMOVE).json()["id"]
        responses = [client.get(f"/v1/status/{pid}") for _ in range(51)]
        assert all(r.status_code == 200 for r in responses[:50])
        assert responses[50].status_code == 429
        assert responses[50].json()["error"] == "RateLimitExceeded"
        assert "Retry-After" in responses[50].headers
        # Per key: run and credits are limited separately.
        assert client.get("/v1/credits").status_code == 200
        assert client.get(f"/v1/status/{pid}").status_code == 429  # still in the window
        server.advance_clock(10)  # the first 50 calls leave the window
        assert client.get(f"/v1/status/{pid}").status_code == 200


def test_credits_limit_30_per_10s(fashn_emulator_factory: Callable[..., EmulatorServer]) -> None:
    server = fashn_emulator_factory(time_scale=FROZEN)
    with api_client(server) as client:
        responses = [client.get("/v1/credits") for _ in range(31)]
    assert all(r.status_code == 200 for r in responses[:30])
    assert responses[30].status_code == 429
    assert responses[30].json()["error"] == "RateLimitExceeded"
    assert server.stats()["requests"][next(iter(server.stats()["requests"]))]["credits"] == 31


def test_limits_are_per_key_and_retry_after_can_be_disabled(
    fashn_emulator_factory: Callable[..., EmulatorServer],
) -> None:
    server = fashn_emulator_factory(
        api_keys=("fa-key-one", "fa-key-two"),
        credits_limit=(2, 10.0),
        send_retry_after=False,
        time_scale=FROZEN,
    )
    with api_client(server, "fa-key-one") as one, api_client(server, "fa-key-two") as two:
        assert [one.get("/v1/credits").status_code for _ in range(3)] == [200, 200, 429]
        assert "Retry-After" not in one.get("/v1/credits").headers
        assert two.get("/v1/credits").status_code == 200


def test_seventh_concurrent_prediction_is_rejected(
    fashn_emulator_factory: Callable[..., EmulatorServer],
) -> None:
    server = fashn_emulator_factory(api_keys=("fa-key-one", "fa-key-two"), time_scale=0.01)
    with api_client(server, "fa-key-one") as one, api_client(server, "fa-key-two") as two:
        accepted = [one.post("/v1/run", json=SLOW) for _ in range(6)]
        assert [r.status_code for r in accepted] == [200] * 6
        seventh = one.post("/v1/run", json=SLOW)
        assert seventh.status_code == 429
        assert seventh.json()["error"] == "ConcurrencyLimitExceeded"
        assert "Retry-After" not in seventh.headers
        assert two.post("/v1/run", json=SLOW).status_code == 200  # another key has its own 6
        server.advance_clock(600)
        deadline = time.monotonic() + 10
        while server.stats()["in_flight"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert one.post("/v1/run", json=SLOW).status_code == 200
    stats = server.stats()
    assert stats["rejected"]["ConcurrencyLimitExceeded"] == 1
    assert stats["peak_in_flight"] == 7


def test_out_of_credits(fashn_emulator_factory: Callable[..., EmulatorServer]) -> None:
    server = fashn_emulator_factory(subscription_credits=1, on_demand_credits=2)
    tryon_max = {"model_name": "tryon-max", "inputs": {"model_image": IMG, "product_image": IMG}}
    with api_client(server) as client:
        assert client.post("/v1/run", json=tryon_max).status_code == 200  # needs 2 of 3
        second = client.post("/v1/run", json=tryon_max)  # needs 2, only 1 not reserved
        assert second.status_code == 429
        assert second.json()["error"] == "OutOfCredits"
        assert client.post("/v1/run", json=REMOVE).status_code == 200  # needs 1
        third = client.post("/v1/run", json=REMOVE)
        assert third.status_code == 429 and third.json()["error"] == "OutOfCredits"
    assert server.stats()["rejected"]["OutOfCredits"] == 2
