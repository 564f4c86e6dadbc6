"""Every exception fashn-prefect raises, in one tree under :class:`FashnError`.

Catch :class:`FashnError` for "anything from fashn-prefect", or a branch of it::

    FashnError
    ├── ConfigurationError            no API key, an insecure base URL, a bad setting
    ├── ModelSpecError (ValueError)   a model description that cannot be used
    │   └── UnknownModel              a model name the specs do not know
    ├── APIError                      the API refused a request; no prediction was created
    │   ├── BadRequest                         HTTP 400
    │   ├── UnauthorizedAccess                 HTTP 401
    │   ├── NotFound                           HTTP 404
    │   ├── RateLimitExceeded                  HTTP 429
    │   ├── ConcurrencyLimitExceeded           HTTP 429
    │   ├── OutOfCredits                       HTTP 429
    │   └── InternalServerError                HTTP 5xx
    ├── InvalidInputs (ValueError)    a prediction's inputs are invalid; nothing was submitted
    ├── InvalidResponse               a 2xx answer that does not match the documented schema
    ├── AmbiguousSubmission           a POST /v1/run whose fate is unknown; never resent blindly
    ├── PredictionFailed              a prediction ended failed (``retryable`` says if a new one may work)
    ├── PollingTimeout (TimeoutError) a prediction still running at the deadline; a re-run resumes it
    ├── OutputUnavailable             an output expired or is gone
    ├── InputPreparationError         a row's local image could not be read or encoded
    ├── StorageTimeout (OSError)      storage did not answer in time
    └── RunError                      a run as a whole could not go on, or ended Failed
        ├── ManifestError (ValueError)   the manifest file cannot be used
        ├── ManifestInvalid (ValueError) rows are invalid; nothing was submitted
        ├── BudgetExceeded (ValueError)  the estimate exceeds the budget or the balance
        └── RunFailed                    a flow finished, but more rows failed than allowed

The ``ValueError``, ``OSError`` and ``TimeoutError`` mix-ins stay where callers already
catch those: bad input is a ``ValueError``; a storage timeout is an ``OSError``, which
Prefect task retries treat as transient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

__all__ = [
    "API_ERRORS",
    "PERMANENT_ERRORS",
    "PERMANENT_RUNTIME_ERRORS",
    "RETRYABLE_RUNTIME_ERRORS",
    "APIError",
    "AmbiguousSubmission",
    "BadRequest",
    "BudgetExceeded",
    "ConcurrencyLimitExceeded",
    "ConfigurationError",
    "FashnError",
    "InputPreparationError",
    "InternalServerError",
    "InvalidInputs",
    "InvalidResponse",
    "ManifestError",
    "ManifestInvalid",
    "ModelSpecError",
    "NotFound",
    "OutOfCredits",
    "OutputUnavailable",
    "PollingTimeout",
    "PredictionFailed",
    "RateLimitExceeded",
    "RunError",
    "RunFailed",
    "StorageTimeout",
    "UnauthorizedAccess",
    "UnknownModel",
]

RETRYABLE_RUNTIME_ERRORS = frozenset(
    {
        "PipelineError",
        "UnavailableError",
        "ThirdPartyError",
        "3rdPartyProviderError",
        "InternalServerError",
    }
)
"""Runtime errors of a prediction that a new attempt may not meet again."""
PERMANENT_RUNTIME_ERRORS = frozenset(
    {"ImageLoadError", "ContentModerationError", "PoseError", "InputValidationError"}
)
"""Runtime errors that the same inputs will meet again."""
PERMANENT_ERRORS = PERMANENT_RUNTIME_ERRORS | {"BadRequest", "OutputMissing"}
"""Errors a re-run does not resubmit unless asked to (``retry_failed``). ``OutputMissing``:
a prediction completed (and was charged) without the outputs it was asked for; running it
again would be charged again, so a person decides."""


class FashnError(Exception):
    """Base class of every error fashn-prefect raises."""


class ConfigurationError(FashnError):
    """The client or a run is misconfigured (no API key, an insecure base URL, ...)."""


class ModelSpecError(FashnError, ValueError):
    """A model description (a spec file, ``FASHN_PREFECT_MODELS``) is malformed; the message
    names where."""


class UnknownModel(ModelSpecError):
    """A model name the specs do not know; the message lists every known name."""

    def __init__(self, name: object, known: list[str] | None = None) -> None:
        self.name = name
        listed = f"; known models: {', '.join(known)}" if known is not None else ""
        super().__init__(f"unknown model {name!r}{listed}")


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
"""The documented API error names and their classes."""


class InvalidInputs(FashnError, ValueError):
    """A prediction's inputs are invalid; nothing was submitted. ``problems`` names each
    input and its problem."""

    name = "InvalidInputs"

    def __init__(self, model_name: str, problems: list[str]) -> None:
        self.problems = problems
        self.message = f"invalid inputs for {model_name}: " + "; ".join(problems)
        super().__init__(self.message)


class InvalidResponse(FashnError):
    """A 2xx response whose body does not match the documented schema."""


class AmbiguousSubmission(FashnError):
    """A ``POST /v1/run`` was sent but its outcome is unknown (timeout, dropped connection).

    A prediction may or may not have been created and charged. It is never resent
    automatically; callers record it and let a person decide.
    """

    name = "AmbiguousSubmission"

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


class PollingTimeout(FashnError, TimeoutError):
    """The prediction did not finish within the deadline; it may still complete later."""

    name = "PollingTimeout"


class OutputUnavailable(FashnError):
    """An output could not be fetched: expired on the CDN, ``<base64>_expired``, or gone."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.message = message
        self.url = url
        super().__init__(message)


class InputPreparationError(FashnError):
    """A row's image could not be read or encoded; nothing was submitted."""

    name = "InputPreparationError"


class StorageTimeout(FashnError, OSError):
    """A storage operation (ledger, image, results table, report) did not finish in time.

    An :class:`OSError`, so Prefect task retries treat it as transient. The operation may
    still complete later in the background; callers must not assume it did not happen.
    """


class RunError(FashnError):
    """A run could not go on, or finished as a failure."""


class ManifestError(RunError, ValueError):
    """The manifest file itself cannot be used (missing, unreadable, empty, bad format)."""


class _Report(Protocol):
    """A validation report (:class:`~fashn_prefect.run.validate.ValidationReport`)."""

    @property
    def problems(self) -> Sequence[object]: ...

    def format(self, limit: int = ...) -> str: ...


class ManifestInvalid(RunError, ValueError):
    """The manifest has invalid rows; nothing was submitted. ``report`` lists them."""

    def __init__(self, report: _Report) -> None:
        self.report = report
        super().__init__(report.format())


class BudgetExceeded(RunError, ValueError):
    """The run's estimated credits exceed the budget or the account balance."""


class RunFailed(RunError):
    """A flow finished, but its outcome is a failure; ``summary`` holds what it returned."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message, summary)
        self.message = message
        self.summary = summary

    def __str__(self) -> str:
        return self.message
