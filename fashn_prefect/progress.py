"""A rich progress bar on the terminal that follows a run's finished rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def row_progress(console: Console, enabled: bool = True) -> Iterator[None]:
    """Show ``rows ━━━ done/total elapsed`` while the block runs a flow."""
    from fashn_prefect import pipeline

    bar = Progress(
        TextColumn("[bold]rows"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
    )
    task_id = bar.add_task("rows", total=None)
    pipeline.set_progress_listener(
        lambda done, total: bar.update(task_id, completed=done, total=total)
    )
    try:
        with bar:
            yield
    finally:
        pipeline.set_progress_listener(None)
