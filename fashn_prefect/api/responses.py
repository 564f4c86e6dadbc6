"""The API's answers, parsed: a prediction's status, a credit balance, a fetched output.

``GET /v1/status/{id}`` is read leniently, as the official SDK reads it: unknown status
and error names are kept, ``output`` is accepted in every documented form, and
``x-fashn-credits-used`` is read from terminal answers only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from fashn_prefect.api.outputs import extension_for
from fashn_prefect.errors import InvalidResponse

__all__ = [
    "CREDITS_USED_HEADER",
    "NON_TERMINAL_STATUSES",
    "CreditBalance",
    "FetchedOutput",
    "PredictionError",
    "PredictionStatus",
    "parse_status",
]

logger = logging.getLogger("fashn_prefect.api.client")

CREDITS_USED_HEADER = "x-fashn-credits-used"
"""The header of a terminal status answer that says what the prediction cost."""
NON_TERMINAL_STATUSES = frozenset({"starting", "in_queue", "processing"})
"""Statuses of a prediction that has not ended; any other status is terminal."""


@dataclass(frozen=True)
class PredictionError:
    """The ``error`` object of a failed prediction (``name`` may be any string)."""

    name: str
    message: str


@dataclass(frozen=True)
class PredictionStatus:
    """A parsed ``GET /v1/status/{id}`` response."""

    id: str
    status: str
    output: list[str] | None
    error: PredictionError | None
    credits_used: int | None
    output_problem: str | None = None
    """Set when ``output`` came in a form no FASHN document describes (nothing was kept)."""

    @property
    def is_terminal(self) -> bool:
        """True unless the status is starting, in_queue or processing (unknown counts as terminal)."""
        return self.status not in NON_TERMINAL_STATUSES

    @property
    def is_completed(self) -> bool:
        """True when the prediction completed successfully."""
        return self.status == "completed"


@dataclass(frozen=True)
class CreditBalance:
    """A parsed ``GET /v1/credits`` response."""

    total: int
    subscription: int
    on_demand: int


@dataclass(frozen=True)
class FetchedOutput:
    """The bytes of one prediction output and its media type (magic bytes, then the URL
    suffix, then the Content-Type header)."""

    data: bytes
    content_type: str

    @property
    def extension(self) -> str:
        """File extension without the dot (``png``, ``jpg``, ``mp4``; ``bin`` if unknown)."""
        return extension_for(self.content_type)

    def __repr__(self) -> str:
        return f"FetchedOutput(content_type={self.content_type!r}, size={len(self.data)})"


def as_int(value: Any) -> int:
    """``value`` as an int: an int, an integral float or a numeric string (never a bool)."""
    if isinstance(value, bool):
        raise TypeError("boolean is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise TypeError(f"not an integer: {value!r}")


def parse_status(response: httpx.Response, requested_id: str) -> PredictionStatus:
    """The :class:`PredictionStatus` of a ``GET /v1/status`` response, read leniently."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("status"), str):
        raise InvalidResponse(
            f"GET /v1/status/{requested_id} returned HTTP {response.status_code} without a status"
        )
    status: str = data["status"]
    output, output_problem = parse_output(data.get("output"))
    if output_problem and status == "completed":
        logger.error(
            "GET /v1/status/%s: completed with an undocumented output form (%s); "
            "the row is recorded as failed with OutputMissing",
            requested_id,
            output_problem,
        )
    raw_error = data.get("error")
    error: PredictionError | None = None
    if isinstance(raw_error, dict):
        error = PredictionError(
            name=str(raw_error.get("name") or "UnknownError"),
            message=str(raw_error.get("message") or ""),
        )
    elif isinstance(raw_error, str) and raw_error:
        error = PredictionError(name="UnknownError", message=raw_error)
    credits_used: int | None = None
    if status not in NON_TERMINAL_STATUSES:
        header = response.headers.get(CREDITS_USED_HEADER)
        if header is not None:
            try:
                credits_used = as_int(header)
            except (TypeError, ValueError):
                logger.warning("Ignoring unparseable %s header %r", CREDITS_USED_HEADER, header)
    raw_id = data.get("id")
    return PredictionStatus(
        id=raw_id if isinstance(raw_id, str) and raw_id else requested_id,
        status=status,
        output=output,
        error=error,
        credits_used=credits_used,
        output_problem=output_problem,
    )


def parse_output(raw: Any) -> tuple[list[str] | None, str | None]:
    """``(outputs, problem)`` for a status ``output`` field in any documented form.

    Documented forms: a list of CDN URLs or base64 data URIs (OpenAPI, SDK), and
    ``{"images": [...]}`` (the face-to-model docs page). A bare string is taken as one
    output. Anything else, or non-string items, is reported as a problem, never dropped
    silently.
    """
    if raw is None:
        return None, None
    if isinstance(raw, str):
        return [raw], None
    if isinstance(raw, dict):
        images = raw.get("images")
        if not isinstance(images, list):
            return None, f"an object with keys {sorted(map(str, raw))[:10]} and no 'images' list"
        raw = images
    if isinstance(raw, list):
        kept = [item for item in raw if isinstance(item, str) and item]
        if len(kept) != len(raw):
            dropped = len(raw) - len(kept)
            return kept, f"{dropped} of {len(raw)} output items are not URL or data URI strings"
        return kept, None
    return None, f"a {type(raw).__name__} where a list of outputs was expected"
