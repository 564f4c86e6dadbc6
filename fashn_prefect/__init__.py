"""fashn-prefect: dependable Prefect pipelines for the FASHN API.

Layers, bottom to top (imports only point down):

- ``environment``: every environment variable the package reads.
- ``errors``: every exception, in one tree under :class:`FashnError`.
- ``api``: the FASHN HTTP client, its responses and the model specs (no Prefect, no storage).
- ``store``: fsspec helpers, the ledger, results tables and run reports.
- ``scheduler``: the account's limits (in-flight slots, run and status rate windows) and
  when to poll.
- ``webhooks``: the local webhook receiver, its secret token and the per-process waiters.
- ``settings``: ``FashnSettings``, every option of a run, declared once.
- ``credentials``: the ``FashnCredentials`` Prefect block.
- ``review``: the HTML gallery, thumbnails and the audit chart.
- ``run``: manifest → validate → plan → execute → write; the row engine and the manifest flows.
- ``jobs``: catalog runs, backfills and credit audits built on ``run``.
- ``tasks``: Prefect tasks to compose in your own flows (``run_prediction``...).
- ``flows``: the deployable flows (``catalog_run``, ``backfill``, ``credit_audit``...).
- ``cli``: the ``fashn-prefect`` command.
- ``emulator``: the offline FASHN API emulator (a separate tool; imports only ``api``,
  ``environment`` and ``errors``).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Loaded on first use so that ``import fashn_prefect`` (and the emulator's pytest plugin)
# stays cheap; listed in ``__dir__`` so ``prefect block register -m fashn_prefect`` finds it.
_ERRORS = (
    "APIError",
    "AmbiguousSubmission",
    "BudgetExceeded",
    "ConfigurationError",
    "FashnError",
    "InvalidInputs",
    "ManifestError",
    "ManifestInvalid",
    "OutputUnavailable",
    "PollingTimeout",
    "PredictionFailed",
    "RunError",
    "RunFailed",
    "StorageTimeout",
)
_LAZY = {
    "FashnClient": "fashn_prefect.api.client",
    "FashnCredentials": "fashn_prefect.credentials",
    "FashnSettings": "fashn_prefect.settings",
    "PredictionResult": "fashn_prefect.tasks",
    "PredictionStatus": "fashn_prefect.api.responses",
    "StorageOptions": "fashn_prefect.store.blocks",
    "run_manifest": "fashn_prefect.run.pipeline",
    "run_predictions": "fashn_prefect.run.pipeline",
    "run_prediction": "fashn_prefect.tasks",
    **{name: "fashn_prefect.errors" for name in _ERRORS},
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
