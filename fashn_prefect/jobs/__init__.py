"""The jobs built on a run: incremental catalog runs, chunked backfills, credit audits,
and the approval gate that pauses a backfill after a pilot (``approval``).

May import ``run`` and everything below it; never ``cli``.
"""
