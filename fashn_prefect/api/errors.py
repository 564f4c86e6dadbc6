"""Exceptions raised by the FASHN client.

Two families, as in the FASHN documentation:

* :class:`APIError` and its subclasses: the API refused the request (HTTP 4xx/5xx with a
  ``{"error": <Name>, "message": ...}`` body). The documentation says no prediction was
  created, so retrying the same request is safe.
* :class:`PredictionFailed`: a prediction was created and then failed at run time
  (``status: "failed"``); its ``retryable`` flag says whether a new attempt may succeed.

:class:`AmbiguousSubmission` is neither: a ``POST /v1/run`` whose fate is unknown. It is
never retried blindly, because a second submission could be charged twice.
"""

from __future__ import annotations

RETRYABLE_RUNTIME_ERRORS = frozenset(
    {
        "PipelineError",
        "UnavailableError",
        "ThirdPartyError",
        "3rdPartyProviderError",
        "InternalServerError",
    }
)
PERMANENT_RUNTIME_ERRORS = frozenset(
    {"ImageLoadError", "ContentModerationError", "PoseError", "InputValidationError"}
)
# Errors that the same inputs will meet again: a re-run does not resubmit such a row
# unless asked to (``retry_failed``).
# ``OutputMissing``: a prediction completed (and was charged) without the outputs it was
# asked for; running it again would be charged again, so a person decides.
PERMANENT_ERRORS = PERMANENT_RUNTIME_ERRORS | {"BadRequest", "OutputMissing"}


class FashnError(Exception):
    """Base class of every error raised by fashn_prefect's FASHN client."""


class ConfigurationError(FashnError):
    """The client is misconfigured (no API key, an insecure base URL, ...)."""


class APIError(FashnError):
    """The API rejected a request; no prediction was created."""

    status_code: int = 0
    name: str = "APIError"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        name: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        if name is not None:
            self.name = name
        self.retry_after = retry_after
        super().__init__(f"{self.name} (HTTP {self.status_code}): {message}")

    @property
    def retryable(self) -> bool:
        """True when the same request may succeed later (429 other than OutOfCredits, 5xx)."""
        return self.status_code >= 500 or (self.status_code == 429 and self.name != "OutOfCredits")


class BadRequest(APIError):
    """HTTP 400: malformed JSON, or missing or invalid parameters."""

    status_code = 400
    name = "BadRequest"


class UnauthorizedAccess(APIError):
    """HTTP 401: missing, invalid or inactive API key."""

    status_code = 401
    name = "UnauthorizedAccess"


class NotFound(APIError):
    """HTTP 404: wrong path, or an unknown or no longer tracked prediction id."""

    status_code = 404
    name = "NotFound"


class RateLimitExceeded(APIError):
    """HTTP 429: too many requests in the endpoint's window."""

    status_code = 429
    name = "RateLimitExceeded"


class ConcurrencyLimitExceeded(APIError):
    """HTTP 429: too many predictions in flight for the account."""

    status_code = 429
    name = "ConcurrencyLimitExceeded"


class OutOfCredits(APIError):
    """HTTP 429: the account's credit balance cannot cover the request."""

    status_code = 429
    name = "OutOfCredits"


class InternalServerError(APIError):
    """HTTP 5xx: the server failed; no prediction was created."""

    status_code = 500
    name = "InternalServerError"


API_ERRORS: dict[str, type[APIError]] = {
    cls.name: cls
    for cls in (
        BadRequest,
        UnauthorizedAccess,
        NotFound,
        RateLimitExceeded,
        ConcurrencyLimitExceeded,
        OutOfCredits,
        InternalServerError,
    )
}


class AmbiguousSubmission(FashnError):
    """A ``POST /v1/run`` was sent but its outcome is unknown (timeout, dropped connection).

    A prediction may or may not have been created and charged. It is never resent
    automatically; callers record it and let a person decide.
    """

    def __init__(self, message: str, *, model_name: str | None = None) -> None:
        self.message = message
        self.model_name = model_name
        super().__init__(message)


class PredictionFailed(FashnError):
    """A prediction reached ``status: "failed"`` (or another non-completed terminal state)."""

    def __init__(
        self,
        name: str,
        message: str,
        *,
        prediction_id: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.name = name
        self.message = message
        self.prediction_id = prediction_id
        self.retryable = name in RETRYABLE_RUNTIME_ERRORS if retryable is None else retryable
        super().__init__(f"{name}: {message}")


class StorageTimeout(OSError):
    """A storage operation (ledger, image, results table, report) did not finish in time.

    An :class:`OSError`, so Prefect task retries treat it as transient. The operation may
    still complete later in the background; callers must not assume it did not happen.
    """


class OutputUnavailable(FashnError):
    """An output could not be fetched: expired on the CDN, ``<base64>_expired``, or gone."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.message = message
        self.url = url
        super().__init__(message)
