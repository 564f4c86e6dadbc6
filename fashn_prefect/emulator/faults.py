"""Fault injection decisions and counters (seeded, so a run is reproducible for a given seed)."""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Iterator, Mapping
from typing import Any

from .config import FaultConfig

REQUEST_FAULTS = (
    "run_5xx",
    "status_5xx",
    "drop_connection",
    "slow_response",
    "hold_run",
    "refund_credits",
    "rate_limit_burst",
    "cdn_gone",
    "canceled",
    "time_out",
    "webhook_drop",
    "webhook_duplicate",
)

RUNTIME_MESSAGES = {
    "ImageLoadError": "Error loading image: emulated failure",
    "ContentModerationError": "Content moderation: the input was flagged (emulated)",
    "PoseError": "Could not detect a body pose in the model image (emulated)",
    "InputValidationError": "Invalid inputs (emulated)",
    "ThirdPartyError": "A third-party service refused the request (emulated)",
    "UnavailableError": "A required service is temporarily unavailable, please retry (emulated)",
    "PipelineError": "Unexpected pipeline failure, please retry (emulated)",
    "3rdPartyProviderError": "Third-party provider failure (emulated)",
    "InternalServerError": "Internal server error (emulated)",
}


def runtime_message(name: str) -> str:
    """Message used for an injected runtime error of the given name."""
    return RUNTIME_MESSAGES.get(name, f"{name} (emulated)")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


class FaultInjector:
    """Holds the live FaultConfig, a seeded RNG for request-level faults, and the counters."""

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self._initial = dataclasses.replace(config, runtime_failures=dict(config.runtime_failures))
        self._seed = seed
        self.reset()

    def reset(self) -> None:
        """Back to the start-up fault config, a fresh RNG and zero counters."""
        self.config = dataclasses.replace(
            self._initial, runtime_failures=dict(self._initial.runtime_failures)
        )
        self._rng = random.Random(f"{self._seed}:faults")
        self.counts: dict[str, int] = dict.fromkeys(REQUEST_FAULTS, 0)
        self.runtime_counts: dict[str, int] = {}
        self._marked_requests: set[str] = set()

    def as_dict(self) -> dict[str, Any]:
        """Current fault config as JSON-able dict."""
        return dataclasses.asdict(self.config)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Merge changes into the live config; unknown names or bad types raise ValueError."""
        known = {f.name: f for f in dataclasses.fields(FaultConfig)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault setting: {name}")
            if name == "runtime_failures":
                if not isinstance(value, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
                    for k, v in value.items()
                ):
                    raise ValueError("runtime_failures must map error names to probabilities")
                value = {k: float(v) for k, v in value.items()}
            elif name in ("failure_marker", "request_fault_marker"):
                if not isinstance(value, str) or not value:
                    raise ValueError(f"{name} must be a non-empty string")
            elif name in (
                "rate_limit_burst",
                "drop_outputs",
                "refund_credits",
                "webhook_fail_attempts",
            ):
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{name} must be a non-negative integer")
            elif isinstance(known[name].default, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be true or false")
            elif not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative number")
            setattr(self.config, name, value)

    def roll(self, name: str) -> bool:
        """Draw for a probabilistic request fault (run_5xx, status_5xx, ...); counts hits."""
        probability = float(getattr(self.config, name))
        if probability <= 0:
            return False
        hit = self._rng.random() < probability
        if hit:
            self.counts[name] += 1
        return hit

    def take_burst(self) -> bool:
        """Consume one forced RateLimitExceeded from rate_limit_burst, if any is left."""
        if self.config.rate_limit_burst <= 0:
            return False
        self.config.rate_limit_burst -= 1
        self.counts["rate_limit_burst"] += 1
        return True

    def take_refund(self) -> int:
        """Credits to give back now (the one-shot ``refund_credits``), counted; else 0."""
        refund, self.config.refund_credits = self.config.refund_credits, 0
        if refund:
            self.counts["refund_credits"] += 1
        return refund

    def marker_failure(self, inputs: Mapping[str, Any]) -> str | None:
        """Error name requested by a failure marker in any string input, else None."""
        pattern = re.compile(re.escape(self.config.failure_marker) + r"([A-Za-z0-9_]+)")
        for text in _strings(inputs):
            match = pattern.search(text)
            if match:
                return match.group(1)
        return None

    def marker_request_fault(self, inputs: Mapping[str, Any], key: str) -> str | None:
        """``drop_connection``, ``slow_response`` or ``hold_run`` when a string input asks for
        it with the request fault marker and no earlier request with the same ``key`` (inputs
        hash) was hit; counts the fault. Otherwise None."""
        pattern = re.compile(
            re.escape(self.config.request_fault_marker)
            + r"(drop_connection|slow_response|hold_run)"
        )
        for text in _strings(inputs):
            match = pattern.search(text)
            if match and key not in self._marked_requests:
                self._marked_requests.add(key)
                self.counts[match.group(1)] += 1
                return match.group(1)
        return None

    def draw_runtime_failure(self, rng: random.Random) -> str | None:
        """One draw from the prediction's RNG against runtime_failures (cumulative)."""
        draw = rng.random()
        cumulative = 0.0
        for name, probability in sorted(self.config.runtime_failures.items()):
            cumulative += probability
            if draw < cumulative:
                return name
        return None

    def count_runtime(self, name: str) -> None:
        """Record one injected runtime failure."""
        self.runtime_counts[name] = self.runtime_counts.get(name, 0) + 1
