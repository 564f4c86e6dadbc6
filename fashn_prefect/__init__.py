"""fashn-prefect: dependable Prefect pipelines for the FASHN API."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Loaded on first use so that ``import fashn_prefect`` (and the emulator's pytest plugin)
# stays cheap; listed in ``__dir__`` so ``prefect block register -m fashn_prefect`` finds it.
_LAZY = {
    "FashnCredentials": "fashn_prefect.credentials",
    "StorageOptions": "fashn_prefect.storage_blocks",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
