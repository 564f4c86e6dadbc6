"""Async client for the FASHN API (``POST /v1/run``, ``GET /v1/status/{id}``, ``GET /v1/credits``).

Built on :class:`httpx.AsyncClient`. Behaviour follows the official ``fashn`` 0.9.0 SDK where
that is safe (env vars ``FASHN_API_KEY`` / ``FASHN_BASE_URL``, ``webhook_url`` as a query
parameter, ``x-fashn-credits-used`` on terminal status responses, lenient parsing of status
and error names) and deliberately departs from it for submissions: the SDK resends
``POST /v1/run`` after a timeout, which can create (and charge) a duplicate prediction.

Retry classification
--------------------
``status``, ``credits``, ``fetch_output`` (idempotent reads) are retried on HTTP 429 other than
``OutOfCredits``, on 5xx, and on transport failures (timeouts, connect errors, dropped
connections). ``run`` is retried only when no prediction can exist:

* an API error carrying the documented ``{"error": <Name>, "message": ...}`` body with a known
  retryable name (``RateLimitExceeded``, ``ConcurrencyLimitExceeded``, ``InternalServerError``);
* a failure before the request left (``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``).

A read or write timeout, a connection dropped after sending, an undecodable 200, or a 5xx
without the documented body raise :class:`~fashn_prefect.errors.AmbiguousSubmission`, never
resent. A 4xx without the documented body is mapped by status code and raised, not retried.

Retry timing. A positive ``Retry-After`` (or ``retry-after-ms``) is honoured as a minimum
(capped at :data:`fashn_prefect.api.retry.RETRY_AFTER_MAX`). Whether the API sends it is
[UNCONFIRMED]; without it, or when it is 0, negative or a date in the past (as the official
SDK treats those), a 429 waits for the endpoint's limit window (``limit_windows``: 60 s for
runs, 10 s for status and credits, the documented limits) plus jittered exponential
back-off, so the retry lands in a fresh window; 5xx and transport failures use the jittered
exponential back-off alone.

A 200 from ``/v1/run`` with no ``id`` but an ``error`` string raises :class:`APIError`
(``name="RunError"``, not retried; [UNCONFIRMED] when the API does this).

The API key is sent only to the API base URL (never to output hosts), and never appears in
logs, ``repr`` or exception text; httpx exceptions raised or chained by this module carry a
copy of the request without the ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx

from fashn_prefect import __version__
from fashn_prefect.api.outputs import (
    decode_data_uri,
    is_expired_base64,
    output_media_type,
)
from fashn_prefect.api.responses import (
    CreditBalance,
    FetchedOutput,
    PredictionStatus,
    as_int,
    parse_status,
)
from fashn_prefect.api.retry import RETRY_AFTER_MAX, parse_retry_after, retry_delay
from fashn_prefect.environment import DEFAULT_BASE_URL, FASHN_API_KEY, FASHN_BASE_URL
from fashn_prefect.errors import (
    API_ERRORS,
    AmbiguousSubmission,
    APIError,
    BadRequest,
    ConfigurationError,
    InternalServerError,
    InvalidResponse,
    NotFound,
    OutputUnavailable,
    RateLimitExceeded,
    UnauthorizedAccess,
)

__all__ = ["DEFAULT_TIMEOUT", "FashnClient"]

logger = logging.getLogger("fashn_prefect.api.client")

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
_RETRYABLE_RUN_ERRORS = frozenset(
    {"RateLimitExceeded", "ConcurrencyLimitExceeded", "InternalServerError"}
)
_UNAVAILABLE_OUTPUT_CODES = frozenset({403, 404, 410})
#: The documented limit windows (seconds) of each endpoint: 50 runs / 60 s, 50 status
#: calls / 10 s, 30 credits calls / 10 s.
DEFAULT_LIMIT_WINDOWS: Mapping[str, float] = {"run": 60.0, "status": 10.0, "credits": 10.0}

# Transport failures that prove the request never reached the server.
_NOT_SENT_RETRYABLE: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
# Failures before sending that will not improve on retry.
_NOT_SENT_PERMANENT: tuple[type[Exception], ...] = (
    httpx.LocalProtocolError,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
)
# Transient failures for idempotent requests.
_TRANSIENT: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
_FALLBACK_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: UnauthorizedAccess,
    404: NotFound,
    429: RateLimitExceeded,
}

Operation = Literal["run", "status", "credits", "fetch"]
KEEPALIVE_EXPIRY = 1.5
"""Seconds an idle pooled connection is reused. Below the keep-alive of common servers
(uvicorn, Node: 5 s; gunicorn: 2 s): a POST on a connection the server is closing that
same moment fails after it may have been read, which makes the submission ambiguous."""


class FashnClient:
    """Async FASHN API client with safe retries. Use as ``async with FashnClient() as c:``."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        allow_insecure_base_url: bool = False,
        http_client: httpx.AsyncClient | None = None,
        limit_windows: Mapping[str, float] | None = None,
    ) -> None:
        key = api_key if api_key is not None else FASHN_API_KEY.get()
        key = (key or "").strip()
        if not key:
            raise ConfigurationError(
                f"No FASHN API key: set the {FASHN_API_KEY.name} environment variable "
                "or pass api_key=... to FashnClient."
            )
        if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
            raise ConfigurationError("The FASHN API key contains whitespace or control characters.")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError("max_retries must be an integer >= 0")
        if backoff_base < 0 or backoff_max < 0:
            raise ValueError("backoff_base and backoff_max must be >= 0")
        raw_url = base_url if base_url is not None else FASHN_BASE_URL.get()
        self._base_url = _validate_base_url(raw_url or DEFAULT_BASE_URL, allow_insecure_base_url)
        self._api_key = key
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = RETRY_AFTER_MAX
        # A 429 without a usable Retry-After waits out the endpoint's window (seconds).
        self.limit_windows = {**DEFAULT_LIMIT_WINDOWS, **(limit_windows or {})}
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=self._timeout,
            headers={"User-Agent": f"fashn-prefect/{__version__}"},
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY),
        )

    @property
    def base_url(self) -> str:
        """The API base URL (no trailing slash)."""
        return self._base_url

    def __repr__(self) -> str:
        return f"FashnClient(base_url={self._base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    # ------------------------------------------------------------------ API methods

    async def run(
        self, model_name: str, inputs: Mapping[str, Any], webhook_url: str | None = None
    ) -> str:
        """Submit a prediction and return its id. Never resends an ambiguous submission."""
        if not model_name:
            raise ValueError("model_name must be a non-empty string")
        params = {"webhook_url": webhook_url} if webhook_url else None
        body = {"model_name": model_name, "inputs": dict(inputs)}
        response = await self._call(
            "POST", "/v1/run", op="run", json=body, params=params, model_name=model_name
        )
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise AmbiguousSubmission(
                f"POST /v1/run for {model_name!r} answered HTTP {response.status_code} with an "
                "unreadable body: a prediction may exist and was not resent.",
                model_name=model_name,
            )
        prediction_id = data.get("id")
        error = data.get("error")
        if not isinstance(prediction_id, str) or not prediction_id:
            if isinstance(error, str) and error:
                raise APIError(
                    self._redact(error), status_code=response.status_code, name="RunError"
                )
            raise AmbiguousSubmission(
                f"POST /v1/run for {model_name!r} answered HTTP {response.status_code} without a "
                "prediction id: a prediction may exist and was not resent.",
                model_name=model_name,
            )
        if error:
            logger.warning("POST /v1/run returned id %s with error %r", prediction_id, error)
        return prediction_id

    async def status(self, prediction_id: str) -> PredictionStatus:
        """Fetch the status of a prediction (``credits_used`` set on terminal responses)."""
        if not isinstance(prediction_id, str) or not prediction_id.strip():
            raise ValueError("prediction_id must be a non-empty string")
        path = "/v1/status/" + quote(prediction_id, safe="")
        response = await self._call("GET", path, op="status")
        return parse_status(response, prediction_id)

    async def credits(self) -> CreditBalance:
        """Fetch the account's credit balance."""
        response = await self._call("GET", "/v1/credits", op="credits")
        try:
            data = response.json()["credits"]
            return CreditBalance(
                total=as_int(data["total"]),
                subscription=as_int(data["subscription"]),
                on_demand=as_int(data["on_demand"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidResponse(
                f"GET /v1/credits returned an unexpected body ({exc!r})"
            ) from None

    async def fetch_output(self, ref: str) -> FetchedOutput:
        """Download an output from its CDN URL or decode its data URI.

        The API key is never sent. Expired outputs (``<base64>_expired``, HTTP 403/404/410)
        raise :class:`~fashn_prefect.errors.OutputUnavailable` without retrying.
        """
        if is_expired_base64(ref):
            raise OutputUnavailable("The base64 output has expired (kept for 60 minutes).")
        if ref.startswith("data:"):
            data, declared = decode_data_uri(ref)
            return FetchedOutput(data=data, content_type=output_media_type(data, None, declared))
        try:
            url = httpx.URL(ref)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not an output URL or data URI: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("output reference must be an http(s) URL or a data: URI")
        response = await self._call("GET", str(url), op="fetch", absolute=True)
        content_type = output_media_type(
            response.content, url.path, response.headers.get("content-type")
        )
        return FetchedOutput(data=response.content, content_type=content_type)

    async def wait(
        self,
        prediction_id: str,
        *,
        poll_interval: float = 2.0,
        timeout: float | None = 600.0,
    ) -> PredictionStatus:
        """Poll ``status`` until the prediction is terminal and return that status.

        ``timeout`` (seconds, None = forever) is an absolute deadline; when it passes,
        :class:`TimeoutError` is raised (the prediction keeps running server-side).
        """
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = await self.status(prediction_id)
            if current.is_terminal:
                return current
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"Prediction {prediction_id} still {current.status!r} after {timeout} s"
                    )
                await asyncio.sleep(min(poll_interval, remaining))
            else:
                await asyncio.sleep(poll_interval)

    # ------------------------------------------------------------------ transport

    async def _call(
        self,
        method: str,
        path: str,
        *,
        op: Operation,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        model_name: str | None = None,
        absolute: bool = False,
    ) -> httpx.Response:
        """Send one logical request, retrying according to the module's classification."""
        url = path if absolute else self._base_url + path
        # Outputs live on other hosts (the CDN): the key is never sent there.
        headers = {} if op == "fetch" else self._auth_headers(json is not None)
        shown = _loggable(url)
        attempt = 0
        while True:
            logger.debug("%s %s (attempt %d)", method, shown, attempt + 1)
            started = time.monotonic()
            try:
                response = await self._http.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    headers=headers,
                    timeout=self._timeout,
                    follow_redirects=op == "fetch",
                )
            except httpx.RequestError as exc:
                _scrub(exc, self._api_key)
                retry_after, refused_by = None, None
                if isinstance(exc, _NOT_SENT_PERMANENT):
                    raise
                if op == "run" and not isinstance(exc, _NOT_SENT_RETRYABLE):
                    raise AmbiguousSubmission(
                        f"POST /v1/run for {model_name!r} failed after the request was sent "
                        f"({type(exc).__name__}: {self._redact(str(exc)) or 'no detail'}): "
                        "a prediction may exist and was not resent.",
                        model_name=model_name,
                    ) from exc
                if not isinstance(exc, _TRANSIENT) or attempt >= self.max_retries:
                    raise
                reason = f"{type(exc).__name__}"
            else:
                elapsed = time.monotonic() - started
                logger.debug(
                    "%s %s -> HTTP %d in %.3f s", method, shown, response.status_code, elapsed
                )
                if response.is_success:
                    return response
                retry_after, refused_by = parse_retry_after(response.headers), response.status_code
                if op == "fetch":
                    reason = self._check_fetch_response(response, url, attempt)
                else:
                    error = self._api_error(response, op=op, model_name=model_name)
                    if attempt >= self.max_retries:
                        raise error
                    reason = f"{error.name} (HTTP {response.status_code})"
            window = 0.0
            if retry_after is None and refused_by == 429:
                window = self.limit_windows.get(op, 0.0)
            delay = retry_delay(
                attempt,
                retry_after,
                self.backoff_base,
                self.backoff_max,
                window=window,
                retry_after_max=self.retry_after_max,
            )
            attempt += 1
            logger.warning(
                "%s %s failed with %s; retry %d/%d in %.2f s",
                method,
                shown,
                reason,
                attempt,
                self.max_retries,
                delay,
            )
            await asyncio.sleep(delay)

    def _api_error(
        self, response: httpx.Response, *, op: Operation, model_name: str | None
    ) -> APIError:
        """Build the APIError for a non-2xx API response; raise it now if not retryable.

        Returns the error only when the request may be retried.
        """
        error, documented = self._parse_api_error(response)
        if op == "run":
            if not documented and response.status_code >= 500:
                raise AmbiguousSubmission(
                    f"POST /v1/run for {model_name!r} answered HTTP {response.status_code} "
                    "without the documented error body: a prediction may exist and was not "
                    "resent.",
                    model_name=model_name,
                ) from error
            if not (documented and error.name in _RETRYABLE_RUN_ERRORS and error.retryable):
                raise error
        elif not error.retryable:
            raise error
        return error

    def _parse_api_error(self, response: httpx.Response) -> tuple[APIError, bool]:
        """Map a non-2xx response to an APIError; the flag says whether the body was documented."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        name = body.get("error") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else None
        documented = isinstance(name, str) and name in API_ERRORS and isinstance(message, str)
        if isinstance(name, str) and name in API_ERRORS:
            cls: type[APIError] = API_ERRORS[name]
        elif status >= 500:
            cls = InternalServerError
        else:
            cls = _FALLBACK_BY_STATUS.get(status, APIError)
        if not isinstance(name, str) or not name:
            name = cls.name if cls is not APIError else f"HTTP{status}"
        if not isinstance(message, str) or not message:
            message = response.reason_phrase or f"HTTP {status}"
        error = cls(
            self._redact(message),
            status_code=status,
            name=self._redact(name),
            retry_after=parse_retry_after(response.headers),
        )
        return error, documented

    def _check_fetch_response(self, response: httpx.Response, url: str, attempt: int) -> str:
        """Raise for a non-retryable output-download failure; return a reason when retryable."""
        status = response.status_code
        shown = _loggable(url)
        if status in _UNAVAILABLE_OUTPUT_CODES:
            raise OutputUnavailable(
                f"Output is no longer available (HTTP {status}): {shown}", url=shown
            )
        retryable = status == 429 or status >= 500
        if not retryable or attempt >= self.max_retries:
            raise httpx.HTTPStatusError(
                f"Fetching output {shown} failed with HTTP {status}",
                request=_redacted_request(response.request, self._api_key),
                response=response,
            )
        return f"HTTP {status}"

    def _auth_headers(self, has_body: bool) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key in text else text


# ---------------------------------------------------------------------- helpers


def _validate_base_url(raw: str, allow_insecure: bool) -> str:
    """Return the normalised base URL, or raise ConfigurationError when it is unsafe."""
    try:
        url = httpx.URL(raw.strip())
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"Invalid FASHN base URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"FASHN base URL must be an http(s) URL, got {raw!r}")
    if url.userinfo or url.query or url.fragment:
        raise ConfigurationError(
            "FASHN base URL must not contain credentials, a query string or a fragment"
        )
    if url.scheme == "http" and not allow_insecure and not _is_loopback(url.host):
        raise ConfigurationError(
            f"Refusing to send the API key over plain http to {url.host!r}: use https, a "
            "loopback host (127.0.0.1, localhost, ::1), or pass allow_insecure_base_url=True."
        )
    return str(url).rstrip("/")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _loggable(url: str) -> str:
    """A URL without its query string (queries may hold signed tokens or webhook secrets)."""
    return url.split("?", 1)[0]


def _redacted_request(request: httpx.Request, api_key: str) -> httpx.Request:
    headers = [
        (name, value)
        for name, value in request.headers.multi_items()
        if name.lower() not in ("authorization", "proxy-authorization") and api_key not in value
    ]
    # The query may hold a webhook URL with its secret token.
    return httpx.Request(request.method, request.url.copy_with(query=None), headers=headers)


def _scrub(exc: httpx.RequestError, api_key: str) -> None:
    """Replace the request an httpx exception carries by a copy without credentials."""
    try:
        request = exc.request
    except RuntimeError:
        return
    exc.request = _redacted_request(request, api_key)
    if any(api_key in str(arg) for arg in exc.args):
        exc.args = tuple(str(arg).replace(api_key, "***") for arg in exc.args)
