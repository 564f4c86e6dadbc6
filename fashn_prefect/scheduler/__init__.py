"""The account's limits: in-flight slots and the run and status rate windows, held in this
process and, with shared limits, on the Prefect server; and the poll scheduler that spends
the status budget where completions are due.

- :mod:`~fashn_prefect.scheduler.rates`: the limits and how calls count against them;
- :mod:`~fashn_prefect.scheduler.leases`: slots leased on the Prefect server (shared limits);
- :mod:`~fashn_prefect.scheduler.account`: one scheduler per account and process;
- :mod:`~fashn_prefect.scheduler.latency` and :mod:`~fashn_prefect.scheduler.polls`: the
  learned latency and when to poll.

Every prediction in a process, from a flow or a user's task, goes through it. Imports
``api`` (for the model specs), the standard library and Prefect's client; never a layer above.
"""
