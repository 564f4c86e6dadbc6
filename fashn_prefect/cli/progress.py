"""A rich progress bar on the terminal that follows a run's finished rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

Update = Callable[[int, int], None]


@contextmanager
def row_progress(console: Console, enabled: bool = True, label: str = "rows") -> Iterator[Update]:
    """Show ``rows ━━━ done/total elapsed`` while the block runs a flow.

    The bar follows :func:`fashn_prefect.run.pipeline.run_manifest` by itself; the yielded
    ``update(done, total)`` lets a caller that runs several manifests (a backfill's chunks)
    drive it with its own totals instead.
    """
    from fashn_prefect.run import pipeline

    bar = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
    )
    task_id = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task_id, completed=done, total=total)

    pipeline.set_progress_listener(update)
    try:
        with bar:
            yield update
    finally:
        pipeline.set_progress_listener(None)
