"""Running rows through FASHN, in stage order: manifest → validate → plan → execute → write.

``manifest`` reads rows, ``validate`` checks them, ``plan`` decides each row's action,
``runtime``/``submit``/``poll``/``collect`` execute them, ``write`` records the results,
``pipeline`` is the Prefect flow that strings the stages together, ``outcome`` decides
its final state (Completed or Failed) and ``events`` emits its Prefect events. May import ``api``,
``store``, ``scheduler``, ``review`` and ``credentials``; never ``jobs`` or ``cli``.
"""
