"""What to tell a user about rows only they can decide on: submissions interrupted before
FASHN's answer arrived, which may or may not have been received (and charged)."""

from __future__ import annotations

__all__ = ["RESUBMIT_FLAG", "RESUBMIT_SETTING", "ambiguous_advice"]

RESUBMIT_SETTING = "re-run with resubmit_ambiguous=True"
RESUBMIT_FLAG = "run the same command again with --resubmit-ambiguous"
_SHOWN_KEYS = 20


def ambiguous_advice(row_keys: list[str], how: str = RESUBMIT_SETTING) -> str:
    """What to do about rows whose submission FASHN may or may not have received.

    ``how`` says how to resubmit them: :data:`RESUBMIT_SETTING` (flows, events) or
    :data:`RESUBMIT_FLAG` (the CLI).
    """
    shown = ", ".join(row_keys[:_SHOWN_KEYS])
    if len(row_keys) > _SHOWN_KEYS:
        shown += f" and {len(row_keys) - _SHOWN_KEYS} more"
    return (
        f"{len(row_keys)} rows ({shown}) were interrupted before FASHN's answer arrived: "
        f"FASHN may or may not have their submission. To finish them, {how}; it submits "
        "each once more, at most one extra charge per row"
    )
