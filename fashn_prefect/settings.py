"""``FashnSettings``: every option that shapes a run, declared once and validated once.

Flows take it as their ``settings`` parameter (a form in the Prefect UI, a mapping in
``deployments/prefect.yaml``), the CLI builds it from flags with the same names
(``--max-in-flight``, ``--run-limit``, ...), and Python callers pass it or any of its
fields by name. Adding an option means adding one field here.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fashn_prefect.scheduler.rates import ApiLimits, RateLimit
from fashn_prefect.webhooks.receiver import parse_listen

__all__ = ["FailureThreshold", "FashnSettings"]

_DEFAULT_LIMITS = ApiLimits()


@dataclass(frozen=True)
class FailureThreshold:
    """How many failed rows a run tolerates before it counts as Failed.

    Written as a row count (``"5"``: more than 5 failed rows fail the run) or a percentage
    of the rows the run processed (``"2%"``). The default, ``"0"``, fails on any failed row.
    Invalid rows (run with ``skip_invalid``) count as failed.
    """

    rows: int | None = 0
    percent: float | None = None

    @classmethod
    def parse(cls, text: str | int | None) -> FailureThreshold:
        """Parse ``"5"``, ``5`` or ``"2%"``; None means the default (no failure tolerated)."""
        if text is None:
            return cls()
        value = str(text).strip()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", value)
        if match:
            percent = float(match.group(1))
            if percent > 100:
                raise ValueError(f"allowed_failures {value!r} is more than 100%")
            return cls(rows=None, percent=percent)
        if value.isdigit():
            return cls(rows=int(value))
        raise ValueError(
            f"allowed_failures {value!r} is not a row count (e.g. 5) or a percentage (e.g. 2%)"
        )

    def exceeded(self, failed: int, processed: int) -> bool:
        """Whether ``failed`` of ``processed`` rows is more than this threshold allows."""
        if self.percent is not None:
            return failed > 0 and 100.0 * failed / max(processed, 1) > self.percent
        return failed > (self.rows or 0)

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.rows or 0)


class FashnSettings(BaseModel):
    """Limits, retries, timeouts, time scale, storage options and behaviour flags of a run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The account's API limits (FASHN's documented defaults; raise them if FASHN raised yours).
    max_in_flight: int = Field(
        _DEFAULT_LIMITS.max_in_flight, ge=1, description="Predictions in flight at once."
    )
    run_limit: str = Field(str(_DEFAULT_LIMITS.run), description="POST /v1/run rate, N/SECONDS.")
    status_limit: str = Field(
        str(_DEFAULT_LIMITS.status), description="GET /v1/status rate, N/SECONDS."
    )
    shared_limits: bool | None = Field(
        None,
        description="Hold the limits on the Prefect server, shared by every run of the "
        "account (default: on when PREFECT_API_URL is set).",
    )
    # Retries and timeouts.
    retries: int = Field(3, ge=0, description="Retries of a row after a transient failure.")
    retry_delay: float = Field(
        10.0, ge=0, description="Seconds before a row's first retry (doubling after)."
    )
    client_timeout: float | None = Field(
        None, gt=0, description="Seconds per API request (default 60, connect 5)."
    )
    storage_timeout: float = Field(
        120.0, gt=0, description="Seconds a storage write or ledger read may take."
    )
    time_scale: float = Field(
        1.0, gt=0, description="Compress API time windows (only for a time-scaled emulator)."
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for the output and manifest URLs."
    )
    storage_block: str | None = Field(
        None,
        description="Name of a StorageOptions block whose secret fsspec options "
        "storage_options is merged over (keeps storage keys out of parameters).",
    )
    allowed_failures: str = Field(
        "0",
        description="Failed rows a run tolerates before it ends Failed: a count (5) or a "
        "percentage (2%).",
    )
    # Webhooks (docs/how-to/webhooks.md): learn of ends at once instead of by polling.
    webhook_listen: str | None = Field(
        None,
        description="HOST:PORT of a webhook receiver started in the run's process (port 0: "
        "any free port); predictions then end on FASHN's call, with polling as the safety net.",
    )
    webhook_url: str | None = Field(
        None,
        description="Public base URL FASHN calls for webhooks: a proxy, ingress or tunnel in "
        "front of webhook_listen (default http://HOST:PORT), or, without webhook_listen, "
        "the webhook relay (ends then arrive as Prefect events).",
    )
    webhook_secret_block: str | None = Field(
        None,
        description="Relay mode (webhook_url without webhook_listen): name of a Prefect "
        "Secret block with the secret shared with the relay (default: "
        "FASHN_PREFECT_WEBHOOK_SECRET).",
    )
    # Behaviour flags.
    skip_invalid: bool = Field(False, description="Run valid rows; report invalid ones.")
    resubmit_ambiguous: bool = Field(
        False, description="Submit again rows whose earlier submission's fate is unknown."
    )
    retry_failed: bool = Field(
        False,
        description="Submit again rows that failed with a permanent error (ImageLoadError, "
        "ContentModerationError, ...) for the same inputs in an earlier run.",
    )
    write_csv: bool = Field(False, description="Also write the results table as CSV.")
    check_balance: bool = Field(True, description="Read the credit balance before and after a run.")
    allow_unknown_models: bool = Field(
        True,
        description="Run model names the specs do not describe as a pass-through (inputs "
        "sent as given, credits unknown until the API reports them); off makes them invalid rows.",
    )

    @model_validator(mode="before")
    @classmethod
    def _removed_fields(cls, values: Any) -> Any:
        """``shared_limits_design`` (removed in 0.2): 'leases' is the only design now."""
        if isinstance(values, Mapping) and "shared_limits_design" in values:
            values = dict(values)
            design = values.pop("shared_limits_design")
            if design != "leases":
                raise ValueError(
                    f"shared_limits_design {design!r} was removed: shared limits are always "
                    "held as leased server slots ('leases'); drop the setting"
                )
            warnings.warn(
                "shared_limits_design is deprecated and ignored ('leases' is the only "
                "design); drop it from your settings",
                DeprecationWarning,
                stacklevel=2,
            )
        return values

    @field_validator("run_limit", "status_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        RateLimit.parse(value)
        return value

    @field_validator("webhook_listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @field_validator("webhook_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"webhook_url {value!r} is not an http(s) URL")
        if parts.query or parts.fragment:
            raise ValueError("webhook_url must have no query or fragment (the token is added)")
        return value

    @field_validator("allowed_failures", mode="before")
    @classmethod
    def _threshold(cls, value: Any) -> str:
        FailureThreshold.parse(value)
        return str(value).strip()

    @property
    def failure_threshold(self) -> FailureThreshold:
        """``allowed_failures``, parsed."""
        return FailureThreshold.parse(self.allowed_failures)

    def resolved_storage_options(self) -> dict[str, Any]:
        """The fsspec options to use: the ``storage_block``'s (loaded now, on the worker)
        with ``storage_options`` merged over them. Never put the result in a parameter."""
        from fashn_prefect.store.blocks import resolve_storage_options

        return resolve_storage_options(self.storage_block, self.storage_options)

    @property
    def limits(self) -> ApiLimits:
        """The API limits these settings describe (not yet time-scaled)."""
        return ApiLimits(
            self.max_in_flight, RateLimit.parse(self.run_limit), RateLimit.parse(self.status_limit)
        )

    @classmethod
    def build(
        cls, settings: FashnSettings | Mapping[str, Any] | None = None, **overrides: Any
    ) -> FashnSettings:
        """``settings`` (or the defaults) with ``overrides`` applied by field name, validated.

        An unknown name raises a ``ValueError`` naming it.
        """
        if isinstance(settings, FashnSettings):
            base: dict[str, Any] = settings.model_dump(exclude_unset=True)
        else:
            base = dict(settings or {})
        return cls.model_validate({**base, **overrides})
