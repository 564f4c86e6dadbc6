"""Pytest fixtures for the FASHN emulator (registered through the ``pytest11`` entry point).

* ``fashn_emulator``: a running :class:`EmulatorServer` with ``time_scale=0.01``, stopped after
  the test.
* ``fashn_emulator_factory``: call with :class:`EmulatorConfig` keyword arguments to start more
  emulators; all are stopped at teardown.

Imports of the server stack happen inside the fixtures so that loading the plugin is cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .server import EmulatorServer


@pytest.fixture
def fashn_emulator_factory() -> Iterator[Callable[..., EmulatorServer]]:
    """Factory: ``fashn_emulator_factory(time_scale=0.01, seed=1, ...)`` -> started server."""
    from .config import EmulatorConfig
    from .server import EmulatorServer

    started: list[EmulatorServer] = []

    def make(**config: Any) -> EmulatorServer:
        config.setdefault("time_scale", 0.01)
        server = EmulatorServer(EmulatorConfig(**config)).start()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def fashn_emulator(
    fashn_emulator_factory: Callable[..., EmulatorServer],
) -> EmulatorServer:
    """A running emulator (time_scale 0.01, default key and limits)."""
    return fashn_emulator_factory()
