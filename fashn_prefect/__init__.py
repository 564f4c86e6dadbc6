"""fashn-prefect: dependable Prefect pipelines for the FASHN API.

Layers, bottom to top (imports only point down):

- ``api``: the FASHN HTTP client, its errors and the model specs (no Prefect, no storage).
- ``store``: fsspec helpers, the ledger, results tables and run reports.
- ``scheduler``: the account's limits (in-flight lanes, run and status rate windows).
- ``settings``: ``FashnSettings``, every option of a run, declared once.
- ``credentials``: the ``FashnCredentials`` Prefect block.
- ``review``: the HTML gallery, thumbnails and the audit chart.
- ``run``: manifest → validate → plan → execute → write, and the ``run_manifest`` flow.
- ``jobs``: catalog runs, backfills and credit audits built on ``run``.
- ``tasks``: Prefect tasks to compose in your own flows (``run_prediction``...).
- ``flows``: the deployable flows (``catalog_run``, ``backfill``, ``credit_audit``...).
- ``cli``: the ``fashn-prefect`` command.
- ``emulator``: the offline FASHN API emulator (a separate tool; imports only ``api.models``).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Loaded on first use so that ``import fashn_prefect`` (and the emulator's pytest plugin)
# stays cheap; listed in ``__dir__`` so ``prefect block register -m fashn_prefect`` finds it.
_LAZY = {
    "FashnClient": "fashn_prefect.api.client",
    "FashnCredentials": "fashn_prefect.credentials",
    "FashnSettings": "fashn_prefect.settings",
    "PredictionStatus": "fashn_prefect.api.client",
    "StorageOptions": "fashn_prefect.store.blocks",
    "run_manifest": "fashn_prefect.run.pipeline",
}

__all__ = [
    "FashnClient",
    "FashnCredentials",
    "FashnSettings",
    "PredictionStatus",
    "StorageOptions",
    "__version__",
    "run_manifest",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
