"""Why a run stopped before submitting anything: an invalid manifest or a budget too small."""

from __future__ import annotations

from fashn_prefect.run.validate import ValidationReport

__all__ = ["BudgetExceeded", "ManifestInvalid"]


class ManifestInvalid(ValueError):
    """The manifest has invalid rows; nothing was submitted."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.format())


class BudgetExceeded(ValueError):
    """The run's estimated credits exceed the budget or the account balance."""
