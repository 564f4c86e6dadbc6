"""The ``fashn-prefect`` command line: commands, error mapping, renderers, the demo,
the ``credentials`` command and the terminal's Prefect log setup (``console``).

Owns the terminal. May import every layer below (jobs, run, review, store, scheduler, api,
emulator); nothing in the package imports it.
"""

from fashn_prefect.cli.app import app, main

__all__ = ["app", "main"]
