"""The suite's own yardstick: ``check_invariants`` must catch a row charged twice.

It is what every flow and reliability scenario trusts, so it is tested on hand-made
ground truth: a flagged double charge is fine only in the run that asked for
resubmission, or as history from an earlier run; an unflagged one never is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _helpers import check_invariants

from fashn_prefect.emulator.state import inputs_hash
from fashn_prefect.run.validate import RowSpec

pytestmark = pytest.mark.unit

INPUTS = {"image": "https://example.com/a.png", "prompt": "p"}
SPEC = RowSpec(1, "row-1", "edit", INPUTS, {}, "h", 1)


def _prediction(pid: str) -> dict[str, Any]:
    return {
        "id": pid,
        "inputs_hash": inputs_hash(INPUTS),
        "credits": 1,
        "status": "completed",
        "output_count": 0,
        "error": None,
    }


def _row(status: str, ids: list[str], ambiguous: bool) -> dict[str, Any]:
    return {
        "row_key": "row-1",
        "status": status,
        "prediction_ids": ids,
        "ambiguous": ambiguous,
        "error_name": None,
        "credits_charged": len(ids),
        "output_uris": [],
    }


STATS = {"predictions": [_prediction("lost"), _prediction("again")], "credits_charged": 2}


def _problems(tmp_path: Path, row: dict[str, Any], **options: Any) -> list[str]:
    check = check_invariants([SPEC], [row], STATS, str(tmp_path), check_outputs=False, **options)
    return check.problems


def test_a_flagged_double_charge_needs_a_run_that_asked_for_it(tmp_path: Path) -> None:
    row = _row("completed", ["again"], ambiguous=True)
    assert _problems(tmp_path, row, resubmit_ambiguous=True) == []
    assert any("did not ask for resubmission" in p for p in _problems(tmp_path, row))


def test_a_double_charge_from_an_earlier_run_is_history(tmp_path: Path) -> None:
    skipped = _row("skipped", ["again"], ambiguous=True)
    assert _problems(tmp_path, skipped, before=STATS) == []


@pytest.mark.parametrize("resubmit", [False, True])
def test_an_unflagged_double_charge_is_always_a_problem(tmp_path: Path, resubmit: bool) -> None:
    row = _row("skipped", ["again"], ambiguous=False)
    problems = _problems(tmp_path, row, before=STATS, resubmit_ambiguous=resubmit)
    assert any(p.startswith("no_double_charge") for p in problems), problems
    assert any(p.startswith("unreported_charges") for p in problems), problems
