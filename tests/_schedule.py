"""How ``make test``'s pytest-xdist workers (``--dist loadfile``) take the test files.

pytest-xdist hands a worker its next file once at most two of its tests are left (a worker
needs the next test to know what to tear down), so a worker still busy with a slow file
holds the next file in the queue until it is done. :class:`SlowFilesFirst` gives such a
worker a quick file instead, which leaves the slow files at the head of the queue to the
workers about to be free. The queue itself is the collection order, slowest files first
(tests/conftest.py).
"""

from __future__ import annotations

from xdist.scheduler import LoadFileScheduling
from xdist.workermanage import WorkerController


class SlowFilesFirst(LoadFileScheduling):
    """``--dist loadfile`` over a queue of files slowest first: a worker still running one
    of the ``slow`` files is handed the first quick file in the queue, if any is left."""

    slow: frozenset[str] = frozenset()

    def _assign_work_unit(self, node: WorkerController) -> None:
        busy = any(
            scope in self.slow and not all(done.values())
            for scope, done in self.assigned_work.get(node, {}).items()
        )
        if busy:
            quick = next((scope for scope in self.workqueue if scope not in self.slow), None)
            if quick is not None:
                self.workqueue.move_to_end(quick, last=False)
        super()._assign_work_unit(node)
