"""The per-prediction worker: wait for ``processing``, load inputs, render outputs, finish.

Timing choices ([UNCONFIRMED]): ``starting`` lasts 0.2-1.0 and ``in_queue`` 0.5-2.0 emulated
seconds; processing takes a uniform draw from ``specs.expected_latency`` (times the
configured ``latency_multiplier``, 1 by default). Input problems
(ImageLoadError, InputValidationError, however caused) fail 1 emulated second into processing (or
at its end if shorter); other runtime failures (injected or marker-requested) fail at the
scheduled end.
All draws come from ``random.Random(f"{seed}:{sequence_number}")``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from typing import Any

import httpx
from PIL import Image

from fashn_prefect.api import specs

from .clock import EmulatedClock
from .config import EmulatorConfig
from .inputs import ImageLoadFailure, load_image
from .media import (
    encode_image,
    image_fingerprint,
    parse_ratio,
    placeholder_mp4,
    render_image,
)
from .state import EmulatorState, Prediction
from .webhooks import deliver_webhook

logger = logging.getLogger("fashn_prefect.emulator")

EARLY_FAILURES = ("ImageLoadError", "InputValidationError")


class RuntimeFailure(Exception):
    """The prediction fails with ``name``/``message``."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def scaled_latency(
    config: EmulatorConfig, sequence_number: int, latency: tuple[float, float]
) -> tuple[float, float]:
    """The documented ``latency`` times the configured multiplier for this prediction."""
    multiplier = config.latency_multiplier
    after = config.latency_multiplier_after
    if after is not None and sequence_number >= after[0]:
        multiplier = after[1]
    return (latency[0] * multiplier, latency[1] * multiplier)


def draw_schedule(
    rng: random.Random, created_at: float, latency: tuple[float, float]
) -> tuple[float, float, float]:
    """(t_queue, t_processing, t_end) for a prediction created at ``created_at``."""
    t_queue = created_at + rng.uniform(0.2, 1.0)
    t_processing = t_queue + rng.uniform(0.5, 2.0)
    low, high = latency
    return t_queue, t_processing, t_processing + rng.uniform(low, max(low, high))


def output_mime(prediction: Prediction) -> str:
    """Content-Type for this prediction's outputs."""
    return {"png": "image/png", "jpeg": "image/jpeg", "mp4": "video/mp4"}.get(
        prediction.output_ext, "application/octet-stream"
    )


def output_refs(prediction: Prediction, base_url: str, now: float, base64_ttl: float) -> list[str]:
    """``output`` array: CDN URLs on the caller's host, or data URIs (expired after the TTL)."""
    if prediction.return_base64:
        expired = (
            prediction.completed_at is not None and now >= prediction.completed_at + base64_ttl
        )
        if expired:
            return ["<base64>_expired" for _ in prediction.outputs]
        mime = output_mime(prediction)
        return [
            f"data:{mime};base64,{base64.b64encode(data).decode()}" for data in prediction.outputs
        ]
    base = base_url.rstrip("/")
    return [
        f"{base}/cdn/{prediction.id}/output_{n}.{prediction.output_ext}"
        for n in range(len(prediction.outputs))
    ]


def envelope(
    prediction: Prediction, base_url: str, now: float, base64_ttl: float
) -> dict[str, Any]:
    """The status JSON ``{id, status, output, error}``."""
    status = prediction.status_at(now)
    output = None
    if status == "completed":
        output = output_refs(prediction, base_url, now, base64_ttl)
    error = dict(prediction.error) if status == "failed" and prediction.error else None
    return {"id": prediction.id, "status": status, "output": output, "error": error}


def _image_fields(prediction: Prediction) -> list[str]:
    """Image inputs: from the specs, or (unknown model) every URL or data URI given."""
    spec = specs.MODELS.get(prediction.model_name)
    if spec is not None:
        return [f.name for f in spec.fields if f.type == "image"]
    return [
        name
        for name, value in prediction.inputs.items()
        if isinstance(value, str) and value.startswith(("http://", "https://", "data:"))
    ]


async def _load_inputs(client: httpx.AsyncClient, prediction: Prediction) -> dict[str, Image.Image]:
    images: dict[str, Image.Image] = {}
    for name in _image_fields(prediction):
        value = prediction.inputs.get(name)
        if value is None or value == "":
            continue
        try:
            images[name] = await load_image(client, value, name)
        except ImageLoadFailure as exc:
            raise RuntimeFailure("ImageLoadError", str(exc)) from None
    return images


def _render(
    prediction: Prediction, resolved: dict[str, Any], images: dict[str, Image.Image]
) -> list[bytes]:
    model = prediction.model_name
    if prediction.output_ext == "mp4":
        duration = resolved.get("duration", 5)
        seconds = float(duration) if isinstance(duration, int | float) else 5.0
        return [
            placeholder_mp4(seconds, image_fingerprint(images))
            for _ in range(prediction.output_count)
        ]
    ordered = list(images.values())
    primary = ordered[0] if ordered else None
    target = parse_ratio(resolved.get("aspect_ratio"))
    source_ratio = primary.width / primary.height if primary is not None else None
    if (
        model == "reframe"
        and target is not None
        and source_ratio is not None
        and abs(source_ratio / target - 1) <= 0.02
    ):
        raise RuntimeFailure("InputValidationError", "Image already matches target aspect ratio")
    if target is None:
        target = 2 / 3 if model == "tryon-v1.6" else (source_ratio or 1.0)
    fmt = "png" if prediction.output_ext == "png" else "jpeg"
    variant = f"{resolved.get('seed', '')}:{prediction.inputs_hash}"
    outputs = []
    for index in range(prediction.output_count):
        image = render_image(
            model_name=model,
            primary=primary,
            extras=ordered[1:],
            ratio=target,
            resolution="v1.6" if model == "tryon-v1.6" else resolved.get("resolution", "1k"),
            index=index,
            variant=variant if primary is not None else f"{resolved.get('prompt', '')}:{variant}",
            transparent=model == "background-remove",
            pad=model == "reframe",
        )
        outputs.append(encode_image(image, fmt))
    return outputs


async def _produce(client: httpx.AsyncClient, prediction: Prediction) -> list[bytes]:
    if prediction.planned_failure is not None:
        raise RuntimeFailure(*prediction.planned_failure)
    known = prediction.model_name in specs.MODELS
    resolved = (
        specs.resolve_inputs(prediction.model_name, prediction.inputs)
        if known
        else dict(prediction.inputs)
    )
    images = await _load_inputs(client, prediction)
    return await asyncio.to_thread(_render, prediction, resolved, images)


async def run_prediction(
    state: EmulatorState, clock: EmulatedClock, client: httpx.AsyncClient, prediction: Prediction
) -> None:
    """Drive one prediction to its terminal state, then deliver its webhook if any."""
    await clock.sleep_until(prediction.t_processing)
    failure: RuntimeFailure | None = None
    try:
        prediction.outputs = await _produce(client, prediction)
    except RuntimeFailure as exc:
        failure = exc
    except Exception:
        logger.exception("emulator failed to produce outputs for %s", prediction.id)
        failure = RuntimeFailure("PipelineError", "Unexpected pipeline failure (emulator)")
    now = clock.now()
    if failure is None and prediction.end_status != "completed":
        prediction.outputs = []
        prediction.outcome = prediction.end_status
        prediction.terminal_at = max(prediction.t_end, now)
    elif failure is None:
        prediction.outcome = "completed"
        prediction.terminal_at = max(prediction.t_end, now)
    else:
        prediction.outputs = []
        prediction.outcome = "failed"
        prediction.error = {"name": failure.name, "message": failure.message}
        if failure.name in EARLY_FAILURES:
            end = min(prediction.t_processing + 1.0, prediction.t_end)
        else:
            end = prediction.t_end
        prediction.terminal_at = max(end, now)
    await clock.sleep_until(prediction.terminal_at)
    state.finalise(prediction)
    if prediction.webhook_url and prediction.webhook is not None:
        payload = envelope(prediction, prediction.base_url, clock.now(), state.config.base64_ttl)
        await deliver_webhook(
            client,
            clock,
            prediction.webhook_url,
            payload,
            prediction.webhook,
            prediction.webhook_faults,
        )
