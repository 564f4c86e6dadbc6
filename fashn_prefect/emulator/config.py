"""Configuration of the FASHN API emulator (plain dataclasses; importing this module is cheap)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

DEFAULT_API_KEY = "fa-emulator-local-key"


@dataclass
class FaultConfig:
    """Fault injection knobs. Probabilities are in [0, 1]; decisions are seeded by the config seed."""

    run_5xx: float = 0.0
    """Probability ``POST /v1/run`` answers 500 InternalServerError (no prediction made)."""
    status_5xx: float = 0.0
    """Probability ``GET /v1/status/{id}`` answers 500 InternalServerError."""
    drop_connection: float = 0.0
    """Probability the TCP connection is closed with no HTTP response (run and status).
    On run the prediction IS created first, so the client cannot know it exists."""
    slow_response: float = 0.0
    """Probability a run/status/credits response is delayed by ``slow_seconds`` REAL seconds."""
    slow_seconds: float = 5.0
    runtime_failures: dict[str, float] = field(default_factory=dict)
    """Runtime error name -> probability a prediction fails with it, e.g. {"PipelineError": 0.03}."""
    failure_marker: str = "emulator-fail:"
    """Any string input containing ``<marker><ErrorName>`` makes the prediction fail with that error."""
    request_fault_marker: str = "emulator-fault:"
    """Any string input containing ``<marker>drop_connection`` or ``<marker>slow_response``
    makes the FIRST ``POST /v1/run`` with those inputs suffer that fault (after the prediction
    is created), as a transient network fault would; later requests are answered normally."""
    rate_limit_burst: int = 0
    """The next N authenticated run/status/credits requests get 429 RateLimitExceeded."""
    cdn_gone: float = 0.0
    """Probability an output URL is already gone (404) when first fetched (sticky per output)."""


@dataclass
class EmulatorConfig:
    """Everything that shapes one emulator instance. Durations are EMULATED seconds."""

    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    subscription_credits: int = 0
    on_demand_credits: int = 1_000_000
    time_scale: float = 1.0
    """REAL seconds per emulated second (0.01 = 100x faster). Applies to latencies, rate-limit
    windows, expiry and the webhook retry schedule."""
    seed: int = 0
    run_limit: tuple[int, float] = (50, 60.0)
    status_limit: tuple[int, float] = (50, 10.0)
    credits_limit: tuple[int, float] = (30, 10.0)
    max_in_flight: int = 6
    cdn_ttl: float = 72 * 3600.0
    base64_ttl: float = 3600.0
    validation: Literal["sync", "runtime"] = "sync"
    faults: FaultConfig = field(default_factory=FaultConfig)
    send_retry_after: bool = True
    """Send ``Retry-After`` (real seconds, possibly fractional) on 429 RateLimitExceeded."""

    def __post_init__(self) -> None:
        if not self.api_keys:
            raise ValueError("EmulatorConfig.api_keys must not be empty")
        if self.time_scale <= 0:
            raise ValueError("EmulatorConfig.time_scale must be > 0")
        if self.validation not in ("sync", "runtime"):
            raise ValueError("EmulatorConfig.validation must be 'sync' or 'runtime'")


def key_id(api_key: str) -> str:
    """Stable, non-reversible identifier of an API key: ``"key-" + sha256(key)[:8]``."""
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:8]
