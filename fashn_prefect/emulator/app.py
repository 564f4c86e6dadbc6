"""The emulator's ASGI application: FASHN endpoints plus the ``/_emulator`` control surface.

Documented choices for what the reference leaves [UNCONFIRMED]:

* Order of checks on ``POST /v1/run``: auth (401) -> ``rate_limit_burst`` -> rate limit (429) ->
  body/JSON (400) -> input validation (400 in ``sync`` mode) -> concurrency (429) -> credits
  (429 OutOfCredits) -> ``run_5xx`` fault -> prediction created -> refund -> drop / hold /
  slow faults.
* Rate limits are sliding windows per API key counting only accepted requests. 429
  RateLimitExceeded carries ``Retry-After`` = REAL seconds until a slot frees, possibly
  fractional (e.g. ``0.412``) because windows are time-scaled; disable with
  ``send_retry_after=False``. Other 429s carry no Retry-After.
* Concurrency counts predictions of the same key in starting/in_queue/processing (of every
  key together with the ``account_concurrency`` switch).
* OutOfCredits: the request's estimate exceeds the balance minus what in-flight predictions
  would still be charged (so the balance never goes negative). One balance for all keys.
* Unknown model names are 400 BadRequest in both validation modes (unless the
  ``accept_unknown_models`` switch is on); in ``runtime`` mode other invalid inputs create a
  prediction that fails with InputValidationError.
* A malformed image input (not an http(s) URL with a host, nor a ``data:image/...;base64,``
  URI) is accepted and the prediction fails at run time with the documented
  ``ImageLoadError`` "Error loading <field>: Invalid URL format", in both validation modes.
* Unknown input keys are accepted and ignored. IDs are random UUID4 strings.
* ``requests`` in stats counts every authenticated run/status/credits request (including the
  rejected ones); ``rejected`` counts every 4xx sent by name (including rate_limit_burst 429s).
* ``slow_response`` applies to run, status and credits; ``drop_connection`` to run and status.
  ``hold_run`` holds a run answer (after creating the prediction) until the client goes away.
  ``request_fault_marker`` aims any of them at the first ``POST /v1/run`` of given inputs.
* ``refund_credits`` gives credits back on the next ``POST /v1/run`` that creates a prediction.
* Status responses with a terminal status carry ``x-fashn-credits-used`` (0 when failed).
* The real-API variants of :class:`~.config.FaultConfig` (``dict_outputs``, ``drop_outputs``,
  ``omit_retry_after``, ``zero_retry_after``, ``omit_credits_header``, ``forget_after``,
  ``canceled``, ``time_out``, ``octet_stream_cdn``, ``account_concurrency``,
  ``accept_unknown_models``) are all off by default.
* Control endpoints (``/_emulator/*``) answer only loopback clients.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fashn_prefect.api import specs

from .clock import EmulatedClock
from .config import EmulatorConfig, key_id
from .faults import FaultInjector, runtime_message
from .inputs import field_words, is_loopback_host
from .limits import SlidingWindowLimiter
from .processing import draw_schedule, envelope, output_mime, run_prediction, scaled_latency
from .state import ACTIVE_STATUSES, EmulatorState, Prediction
from .transport import DropConnectionMiddleware, request_drop

logger = logging.getLogger("fashn_prefect.emulator")

_ALWAYS_PNG = ("background-remove", "product-to-model")
_CDN_NAME = re.compile(r"^output_(\d+)\.([a-z0-9]+)$")


def api_error(
    status: int, name: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The documented error body ``{"error": name, "message": message}``."""
    return JSONResponse({"error": name, "message": message}, status_code=status, headers=headers)


def format_seconds(seconds: float) -> str:
    """Retry-After value: integer when whole, else up to 3 decimals (never below 0.001)."""
    seconds = max(seconds, 0.001)
    if seconds >= 10 or float(seconds).is_integer():
        return str(int(-(-seconds // 1)))
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


class Emulator:
    """One emulator instance: config, clock, state, faults and limiters."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.clock = EmulatedClock(config.time_scale)
        self.state = EmulatorState(config)
        self.faults = FaultInjector(config.faults, config.seed)
        self.limiters = {
            "run": SlidingWindowLimiter(*config.run_limit),
            "status": SlidingWindowLimiter(*config.status_limit),
            "credits": SlidingWindowLimiter(*config.credits_limit),
        }
        self._keys = tuple(k.encode() for k in config.api_keys)
        self.client: httpx.AsyncClient | None = None

    def reset(self) -> None:
        """Back to the start-up state (predictions, counters, credits, faults, limits, clock)."""
        self.state.reset_data()
        self.faults.reset()
        for limiter in self.limiters.values():
            limiter.reset()
        self.clock.reset()

    def stats(self) -> dict[str, Any]:
        """The stats document."""
        return self.state.stats(self.clock.now(), self.faults.counts, self.faults.runtime_counts)

    # -- request gates ----------------------------------------------------------------------
    def authenticate(self, request: Request) -> str | None:
        """Key id for a valid ``Authorization: Bearer <key>`` header, else None."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = token.strip().encode()
        for key in self._keys:
            if hmac.compare_digest(presented, key):
                return key_id(key.decode())
        return None

    def gate(self, request: Request, endpoint: str) -> tuple[str | None, Response | None]:
        """Auth, burst fault and rate limit for run/status/credits."""
        kid = self.authenticate(request)
        if kid is None:
            self.state.count_rejection("UnauthorizedAccess")
            return None, api_error(401, "UnauthorizedAccess", "Invalid or inactive API key")
        self.state.count_request(kid, endpoint)
        if self.faults.take_burst():
            self.state.count_rejection("RateLimitExceeded")
            return kid, self.rate_limited(1.0)
        wait = self.limiters[endpoint].check(kid, self.clock.now())
        if wait is not None:
            self.state.count_rejection("RateLimitExceeded")
            return kid, self.rate_limited(wait)
        return kid, None

    def rate_limited(self, emulated_wait: float) -> Response:
        """429 RateLimitExceeded, with Retry-After in real seconds when enabled."""
        headers = None
        switches = self.faults.config
        if switches.zero_retry_after:
            headers = {"Retry-After": "0"}
        elif self.config.send_retry_after and not switches.omit_retry_after:
            headers = {"Retry-After": format_seconds(self.clock.to_real(emulated_wait))}
        return api_error(429, "RateLimitExceeded", "Too many requests", headers)

    def reject(self, status: int, name: str, message: str) -> Response:
        """A counted API error response."""
        self.state.count_rejection(name)
        return api_error(status, name, message)

    # -- prediction creation ----------------------------------------------------------------
    def create_prediction(
        self,
        kid: str,
        model_name: str,
        inputs: dict[str, Any],
        base_url: str,
        webhook_url: str | None,
        estimate: int,
        invalid: str | None,
        image_problem: str | None = None,
    ) -> Prediction:
        """Create a prediction and start its worker."""
        state = self.state
        seq = state.sequence
        state.sequence += 1
        rng = random.Random(f"{self.config.seed}:{seq}")
        try:
            latency = specs.expected_latency(model_name, inputs)
        except Exception:
            latency = (5.0, 15.0)
        latency = scaled_latency(self.config, seq, latency)
        now = self.clock.now()
        t_queue, t_processing, t_end = draw_schedule(rng, now, latency)
        injected = self.faults.draw_runtime_failure(rng)
        planned: tuple[str, str] | None = None
        end_status = "completed"
        if self.faults.roll("canceled"):
            end_status = "canceled"
        elif self.faults.roll("time_out"):
            end_status = "time_out"
        if image_problem is not None:
            planned = ("ImageLoadError", image_problem)
        elif invalid is not None:
            planned = ("InputValidationError", invalid)
        else:
            marker = self.faults.marker_failure(inputs)
            name = marker or injected
            if name is not None:
                planned = (name, runtime_message(name))
                self.faults.count_runtime(name)
        try:
            count = specs.output_count(model_name, inputs)
        except Exception:
            count = 1
        try:
            ext = specs.output_format(model_name, inputs)
        except Exception:
            ext = "png"
        if model_name in _ALWAYS_PNG:
            ext = "png"
        prediction = Prediction(
            id=str(uuid.uuid4()),
            seq=seq,
            key_id=kid,
            model_name=model_name,
            inputs=inputs,
            base_url=base_url,
            created_at=now,
            t_queue=t_queue,
            t_processing=t_processing,
            t_end=t_end,
            estimate=estimate,
            output_count=max(1, count),
            output_ext=ext,
            return_base64=inputs.get("return_base64") is True and ext != "mp4",
            webhook_url=webhook_url,
            planned_failure=planned,
            end_status=end_status,
        )
        if webhook_url:
            prediction.webhook = {"url": webhook_url, "attempts": 0, "delivered": False}
            switches = self.faults.config
            prediction.webhook_faults = {
                "dropped": self.faults.roll("webhook_drop"),
                "copies": 2 if self.faults.roll("webhook_duplicate") else 1,
                "delay": float(switches.webhook_delay),
                "fail_attempts": int(switches.webhook_fail_attempts),
            }
        state.add(prediction)
        assert self.client is not None, "emulator app is not running (lifespan not started)"
        task = asyncio.get_running_loop().create_task(
            run_prediction(state, self.clock, self.client, prediction)
        )
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
        logger.info("prediction %s created (%s, key %s)", prediction.id, model_name, kid)
        return prediction


def _problem_text(problems: list[Any]) -> str:
    return "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in problems)


def _parse_run_body(raw: bytes) -> tuple[str, dict[str, Any]] | str:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "Invalid request body: malformed JSON"
    if not isinstance(body, dict):
        return "Invalid request body: expected a JSON object"
    model_name = body.get("model_name")
    if not isinstance(model_name, str) or not model_name:
        return "Invalid request body: model_name is required"
    inputs = body.get("inputs")
    if not isinstance(inputs, dict):
        return "Invalid request body: inputs must be an object"
    return model_name, inputs


def _is_bad_image(model_name: str, inputs: Mapping[str, Any], problem: Any) -> bool:
    """True for a malformed image input that was given (not a missing one, and not a
    cross-field rule such as end_image only at 1080p, which the API refuses with a 400)."""
    spec = specs.MODELS.get(model_name)
    found = spec.field(problem.field) if spec is not None and problem.field else None
    value = inputs.get(problem.field) if problem.field else None
    return (
        found is not None
        and found.type == "image"
        and isinstance(value, str)
        and specs.image_value_problem(found, value) is not None
    )


def _image_load_problem(
    model_name: str, inputs: Mapping[str, Any], problems: list[Any]
) -> str | None:
    """The documented runtime message for the first malformed image input, if any."""
    for problem in problems:
        if _is_bad_image(model_name, inputs, problem):
            return f"Error loading {field_words(problem.field)}: Invalid URL format"
    return None


def _forgotten(prediction: Prediction, now: float, forget_after: float) -> bool:
    """True once a finished prediction is past the ``forget_after`` tracking horizon."""
    done = prediction.completed_at
    return forget_after > 0 and done is not None and now >= done + forget_after


def _valid_webhook(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


async def _held(request: Request, emu: Emulator, until_disconnect: bool) -> bool:
    """Hold a ``POST /v1/run`` answer (fault ``hold_run``) until the client goes away, or
    (unless ``until_disconnect``) until the switch is turned off; True when it went away."""
    while until_disconnect or emu.faults.config.hold_run:
        if await request.is_disconnected():
            return True
        await asyncio.sleep(0.01)
    return False


def build_routes(emu: Emulator) -> list[Route]:
    """All HTTP routes bound to one Emulator."""

    async def run(request: Request) -> Response:
        kid, rejection = emu.gate(request, "run")
        if rejection is not None or kid is None:
            return rejection or api_error(401, "UnauthorizedAccess", "Invalid or inactive API key")
        parsed = _parse_run_body(await request.body())
        if isinstance(parsed, str):
            return emu.reject(400, "BadRequest", parsed)
        model_name, inputs = parsed
        webhook_url = request.query_params.get("webhook_url") or None
        if webhook_url is not None and not _valid_webhook(webhook_url):
            return emu.reject(400, "BadRequest", "Invalid webhook_url: expected an http(s) URL")
        known = model_name in specs.MODELS
        if not known and not emu.faults.config.accept_unknown_models:
            problems = specs.validate(model_name, inputs)
            return emu.reject(400, "BadRequest", _problem_text(problems) or "Unknown model_name")
        problems = (
            [p for p in specs.validate(model_name, inputs) if p.level == "error"] if known else []
        )
        image_problem = _image_load_problem(model_name, inputs, problems)
        if image_problem is not None:
            problems = [p for p in problems if not _is_bad_image(model_name, inputs, p)]
        invalid = _problem_text(problems) if problems else None
        if invalid is not None and emu.config.validation == "sync":
            return emu.reject(400, "BadRequest", f"Invalid inputs: {invalid}")
        state, now = emu.state, emu.clock.now()
        state.refresh(now)
        scope = None if emu.faults.config.account_concurrency else kid
        if state.in_flight(scope) >= emu.config.max_in_flight:
            return emu.reject(
                429,
                "ConcurrencyLimitExceeded",
                f"Concurrency limit exceeded: {emu.config.max_in_flight} predictions already "
                "in progress",
            )
        estimate = 0
        if invalid is None and image_problem is None:
            try:
                estimate = (
                    specs.estimate_credits(model_name, inputs)
                    if known
                    else specs.output_count(model_name, inputs)
                )
            except Exception:
                estimate = 0
        available = state.total_credits - state.reserved_credits()
        if estimate > available:
            return emu.reject(
                429,
                "OutOfCredits",
                f"Not enough credits: this request needs {estimate}, {max(0, available)} available",
            )
        if emu.faults.roll("run_5xx"):
            return api_error(500, "InternalServerError", "Server error")
        prediction = emu.create_prediction(
            kid,
            model_name,
            inputs,
            str(request.base_url),
            webhook_url,
            estimate,
            invalid,
            image_problem,
        )
        emu.state.refund(emu.faults.take_refund())
        forced = emu.faults.marker_request_fault(inputs, prediction.inputs_hash)
        if forced == "drop_connection" or emu.faults.roll("drop_connection"):
            request_drop(request)
            return Response(status_code=204)
        if forced == "hold_run" or emu.faults.config.hold_run:
            if forced is None:
                emu.faults.counts["hold_run"] += 1
            if await _held(request, emu, until_disconnect=forced is not None):
                return Response(status_code=204)  # nobody is listening any more
        if forced == "slow_response" or emu.faults.roll("slow_response"):
            await asyncio.sleep(emu.faults.config.slow_seconds)
        return JSONResponse({"id": prediction.id, "error": None})

    async def status(request: Request) -> Response:
        kid, rejection = emu.gate(request, "status")
        if rejection is not None or kid is None:
            return rejection or api_error(401, "UnauthorizedAccess", "Invalid or inactive API key")
        if emu.faults.roll("status_5xx"):
            return api_error(500, "InternalServerError", "Failed to fetch prediction status")
        now = emu.clock.now()
        emu.state.refresh(now)
        prediction = emu.state.predictions.get(request.path_params["prediction_id"])
        switches = emu.faults.config
        if prediction is None or _forgotten(prediction, now, switches.forget_after):
            return emu.reject(404, "NotFound", "Prediction not found")
        prediction.status_calls += 1
        if prediction.first_status_at is None:
            prediction.first_status_at = now
        body = envelope(prediction, str(request.base_url), now, emu.config.base64_ttl)
        headers = {}
        if body["status"] not in ACTIVE_STATUSES:
            if prediction.seen_terminal_at is None:
                prediction.seen_terminal_at = now
            if not switches.omit_credits_header:
                headers["x-fashn-credits-used"] = str(prediction.credits)
        if isinstance(body["output"], list):
            if switches.drop_outputs:
                body["output"] = body["output"][
                    : max(0, len(body["output"]) - switches.drop_outputs)
                ]
            if switches.dict_outputs:
                body["output"] = {"images": body["output"]}
        if emu.faults.roll("drop_connection"):
            request_drop(request)
            return Response(status_code=204)
        if emu.faults.roll("slow_response"):
            await asyncio.sleep(emu.faults.config.slow_seconds)
        return JSONResponse(body, headers=headers)

    async def credits(request: Request) -> Response:
        kid, rejection = emu.gate(request, "credits")
        if rejection is not None or kid is None:
            return rejection or api_error(401, "UnauthorizedAccess", "Invalid or inactive API key")
        emu.state.refresh(emu.clock.now())
        body = {"credits": emu.state.credits_body()}
        if emu.faults.roll("slow_response"):
            await asyncio.sleep(emu.faults.config.slow_seconds)
        return JSONResponse(body)

    async def cdn(request: Request) -> Response:
        now = emu.clock.now()
        emu.state.refresh(now)
        prediction = emu.state.predictions.get(request.path_params["prediction_id"])
        match = _CDN_NAME.match(request.path_params["filename"])
        if prediction is None or match is None or not prediction.finalised:
            return Response("Not Found", status_code=404, media_type="text/plain")
        index, ext = int(match.group(1)), match.group(2)
        if (
            prediction.outcome != "completed"
            or prediction.return_base64
            or ext != prediction.output_ext
            or index >= len(prediction.outputs)
            or prediction.completed_at is None
            or now >= prediction.completed_at + emu.config.cdn_ttl
        ):
            return Response("Not Found", status_code=404, media_type="text/plain")
        if index not in prediction.cdn_gone and emu.faults.config.cdn_gone > 0:
            prediction.cdn_gone[index] = emu.faults.roll("cdn_gone")
        if prediction.cdn_gone.get(index):
            return Response("Not Found", status_code=404, media_type="text/plain")
        media = (
            "application/octet-stream"
            if emu.faults.config.octet_stream_cdn
            else output_mime(prediction)
        )
        return Response(prediction.outputs[index], media_type=media)

    def control(handler: Any) -> Any:
        async def guarded(request: Request) -> Response:
            host = request.client.host if request.client else None
            if not is_loopback_host(host):
                return api_error(403, "Forbidden", "emulator control endpoints are loopback-only")
            result: Response = await handler(request)
            return result

        return guarded

    async def get_faults(request: Request) -> Response:
        return JSONResponse(emu.faults.as_dict())

    async def put_faults(request: Request) -> Response:
        try:
            changes = json.loads(await request.body() or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            emu.faults.update(changes)
        except ValueError as exc:
            return api_error(400, "BadRequest", str(exc))
        return JSONResponse(emu.faults.as_dict())

    async def get_stats(request: Request) -> Response:
        return JSONResponse(emu.stats())

    async def reset(request: Request) -> Response:
        emu.reset()
        return JSONResponse({"ok": True})

    async def advance(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
            seconds = float(body["seconds"])
            if seconds < 0 or seconds != seconds:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return api_error(400, "BadRequest", 'expected {"seconds": <non-negative number>}')
        emu.clock.advance(seconds)
        emu.state.refresh(emu.clock.now())
        return JSONResponse({"now": emu.clock.now()})

    async def put_file(request: Request) -> Response:
        name = request.path_params["name"]
        content_type = request.headers.get("content-type", "application/octet-stream")
        emu.state.files[name] = (await request.body(), content_type)
        return JSONResponse({"url": f"{str(request.base_url).rstrip('/')}/files/{name}"})

    async def get_file(request: Request) -> Response:
        found = emu.state.files.get(request.path_params["name"])
        if found is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        return Response(found[0], media_type=found[1])

    return [
        Route("/v1/run", run, methods=["POST"]),
        Route("/v1/status/{prediction_id}", status, methods=["GET"]),
        Route("/v1/credits", credits, methods=["GET"]),
        Route("/cdn/{prediction_id}/{filename}", cdn, methods=["GET"]),
        Route("/files/{name:path}", get_file, methods=["GET"]),
        Route("/_emulator/faults", control(get_faults), methods=["GET"]),
        Route("/_emulator/faults", control(put_faults), methods=["PUT"]),
        Route("/_emulator/stats", control(get_stats), methods=["GET"]),
        Route("/_emulator/reset", control(reset), methods=["POST"]),
        Route("/_emulator/clock/advance", control(advance), methods=["POST"]),
        Route("/_emulator/files/{name:path}", control(put_file), methods=["PUT"]),
    ]


class EmulatorApp(DropConnectionMiddleware):
    """The ASGI callable returned by :func:`create_app`; ``.emulator`` is the live instance."""

    def __init__(self, app: Starlette, emulator: Emulator) -> None:
        super().__init__(app)
        self.emulator = emulator


def create_app(config: EmulatorConfig | None = None) -> EmulatorApp:
    """Build the emulator ASGI app (run it with uvicorn; needs lifespan events)."""
    emu = Emulator(config or EmulatorConfig())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        emu.client = httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(10.0))
        try:
            yield
        finally:
            tasks = list(emu.state.tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await emu.client.aclose()

    async def not_found(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            return api_error(405, "MethodNotAllowed", "Method not allowed")
        if request.url.path.startswith("/v1/"):
            emu.state.count_rejection("NotFound")
        return api_error(404, "NotFound", "Not found")

    starlette = Starlette(
        routes=build_routes(emu),
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_found},
    )
    return EmulatorApp(starlette, emu)
