"""Webhooks: learn that a prediction ended the moment FASHN says so, instead of polling.

- :mod:`.token`: the secret token in the URL FASHN calls (random per process, or derived
  from a secret the relay and the runs share).
- :mod:`.registry`: the per-process waiters, one per prediction submitted with a webhook;
  deliveries that arrive before the ``POST /v1/run`` answer are held briefly.
- :mod:`.receiver`: the local HTTP receiver (Starlette on uvicorn, in a thread), one per
  process, account and listen address.

A delivery is only a wake-up call: the row engine (:func:`fashn_prefect.run.poll.wait_for`)
confirms each one with exactly one ``GET /v1/status`` and never uses the body's outputs.
"""
