"""Offline emulator of the FASHN API (``/v1/run``, ``/v1/status``, ``/v1/credits``).

A real HTTP server (Starlette + uvicorn) for tests, demos and CI, in the spirit of moto. Importing
this package is cheap; the server pieces are loaded on first use of ``EmulatorServer`` or
``create_app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import DEFAULT_API_KEY, EmulatorConfig, FaultConfig

if TYPE_CHECKING:
    from .app import create_app
    from .server import EmulatorServer

__all__ = ["DEFAULT_API_KEY", "EmulatorConfig", "EmulatorServer", "FaultConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "EmulatorServer":
        from .server import EmulatorServer

        return EmulatorServer
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
