"""Running rows through FASHN, in stage order: manifest → validate → plan → execute → write.

- reading and checking: ``manifest`` reads rows, ``validate`` checks them, ``request``
  holds what a run is asked to do;
- planning: ``plan`` decides each row's action (submit, resume, skip, ...);
- the one row engine: ``rows`` (predict, collect, the row task), with ``submit``,
  ``poll``, ``collect`` and ``inputs``, on a ``runtime`` (client, account scheduler,
  ledger); the composable tasks use it too;
- recording: ``result_rows`` and ``write`` build the results table, ``outcome`` decides
  the final state, ``events`` emits Prefect events, ``observe`` tells the CLI;
- ``stages`` strings plan, execute and write together; ``pipeline`` holds the two flows.

May import ``api``, ``store``, ``scheduler``, ``review``, ``settings`` and
``credentials``; never ``jobs`` or ``cli``.
"""
