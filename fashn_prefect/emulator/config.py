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
    """Any string input containing ``<marker>drop_connection``, ``<marker>slow_response`` or
    ``<marker>hold_run`` makes the FIRST ``POST /v1/run`` with those inputs suffer that fault (after the prediction
    is created), as a transient network fault would; later requests are answered normally."""
    hold_run: bool = False
    """``POST /v1/run`` creates the prediction, then sends no answer while this is on, until
    the client goes away: a submission in flight when the client process dies. A string
    input containing ``<request_fault_marker>hold_run`` holds the first POST of those
    inputs the same way (until the client goes away)."""
    refund_credits: int = 0
    """The next ``POST /v1/run`` that creates a prediction first gives this many credits back
    to the account (a refund booked during a run); then the switch is back at 0."""
    rate_limit_burst: int = 0
    """The next N authenticated run/status/credits requests get 429 RateLimitExceeded."""
    cdn_gone: float = 0.0
    """Probability an output URL is already gone (404) when first fetched (sticky per output)."""

    # -- real-API variants (issue 11). Each is off by default; the default answers are the
    # documented forms. They can be switched at start-up or live with ``set_faults``.
    dict_outputs: bool = False
    """Completed status answers carry ``output: {"images": [...]}`` (as on the face-to-model
    docs page) instead of the documented flat list."""
    drop_outputs: int = 0
    """Completed predictions list this many fewer outputs than they were asked for (all of
    them when >= the count); they are still charged in full."""
    omit_retry_after: bool = False
    """429 RateLimitExceeded carries no ``Retry-After`` header."""
    zero_retry_after: bool = False
    """429 RateLimitExceeded carries ``Retry-After: 0``."""
    omit_credits_header: bool = False
    """Terminal status answers carry no ``x-fashn-credits-used`` header (credits are still charged)."""
    forget_after: float = 0.0
    """Emulated seconds after a prediction finishes when status calls start answering 404
    NotFound ("no longer tracked"); 0 = never forget."""
    canceled: float = 0.0
    """Probability a prediction ends ``canceled`` (``error: null``, nothing charged)."""
    time_out: float = 0.0
    """Probability a prediction ends ``time_out`` (``error: null``, nothing charged)."""
    octet_stream_cdn: bool = False
    """CDN output downloads answer ``Content-Type: application/octet-stream``."""
    account_concurrency: bool = False
    """The in-flight limit counts the predictions of every API key together (one account)
    instead of per key."""
    accept_unknown_models: bool = False
    """``POST /v1/run`` accepts a model name the specs do not describe, as a model FASHN
    shipped after this release would be: inputs that are URLs or data URIs are loaded as
    images, ``num_images``/``num_samples`` outputs (default 1) are rendered, 1 credit each."""

    # -- webhook delivery (issue 24): test a receiver's handling of lost, repeated, late and
    # retried deliveries. Decided per prediction when it is created (seeded).
    webhook_drop: float = 0.0
    """Probability a prediction's webhook is never sent (no attempt at all)."""
    webhook_duplicate: float = 0.0
    """Probability a prediction's webhook is delivered twice (a second, separate delivery)."""
    webhook_delay: float = 0.0
    """Emulated seconds between the end of a prediction and its webhook's first attempt."""
    webhook_fail_attempts: int = 0
    """The first N attempts of every delivery fail without reaching the receiver (as a
    network failure would), so the retry schedule is exercised; more than 5 loses it."""


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
    latency_multiplier: float = 1.0
    """Processing takes this many times the specs' documented latency (benchmarks of an
    API running faster or slower than documented). Off (1.0) by default."""
    latency_multiplier_after: tuple[int, float] | None = None
    """``(n, m)``: from the ``n``-th prediction on, processing takes ``m`` times the documented
    latency instead (a queue that fills up during a run). Off by default."""

    def __post_init__(self) -> None:
        if not self.api_keys:
            raise ValueError("EmulatorConfig.api_keys must not be empty")
        if self.time_scale <= 0:
            raise ValueError("EmulatorConfig.time_scale must be > 0")
        if self.latency_multiplier <= 0 or (
            self.latency_multiplier_after is not None and self.latency_multiplier_after[1] <= 0
        ):
            raise ValueError("EmulatorConfig latency multipliers must be > 0")
        if self.validation not in ("sync", "runtime"):
            raise ValueError("EmulatorConfig.validation must be 'sync' or 'runtime'")


def key_id(api_key: str) -> str:
    """Stable, non-reversible identifier of an API key: ``"key-" + sha256(key)[:8]``."""
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:8]
