"""A rich progress bar on the terminal that follows a run's finished rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

Update = Callable[[int, int], None]


@contextmanager
def row_progress(console: Console, enabled: bool = True, label: str = "rows") -> Iterator[Update]:
    """Show ``rows ━━━ done/total elapsed`` while the block runs a flow.

    The bar follows every run started in the block (through the run observer); the
    yielded ``update(done, total)`` lets a caller that runs several manifests (a
    backfill's chunks) drive it with its own totals instead.
    """
    from fashn_prefect.run.observe import RunObserver, current_observer, observing

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

    observer = current_observer()
    with nullcontext(observer) if observer else observing(RunObserver()) as watched:
        previous, watched.on_progress = watched.on_progress, update
        try:
            with bar:
                yield update
        finally:
            watched.on_progress = previous
