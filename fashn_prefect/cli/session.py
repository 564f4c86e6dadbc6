"""The terminal set-up every command that runs predictions shares (``run``, ``catalog``,
``backfill``): expected failures as one line, Prefect's logs and a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fashn_prefect.cli.console import terminal_logs
from fashn_prefect.cli.errors import err, friendly_errors


@contextmanager
def running(
    command: str, json_output: bool, quiet: bool, *, progress: bool = True
) -> Iterator[Callable[[int, int], None]]:
    """Run ``command``'s work: a failure becomes one line and an exit code, ``--json`` and
    ``--quiet`` keep Prefect's logs and the progress bar off the terminal, and the bar
    (unless ``progress`` is off) follows the rows. Yields the bar's ``update(done, total)``.
    """
    from fashn_prefect.cli.progress import row_progress

    silent = quiet or json_output
    with (
        friendly_errors(command, json_output),
        terminal_logs(silent),
        row_progress(err, enabled=progress and not silent) as update,
    ):
        yield update
