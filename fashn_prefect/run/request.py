"""What a run is asked to do, built once and handed down: :class:`RunRequest`, and
:class:`CheckedRows` (rows already read and validated, so no later stage does it again).

The flows, the catalog and backfill jobs and the CLI each build one request from their
own parameters; everything below them takes the request instead of repeating the list.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, model_serializer

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.run.manifest import Manifest, read_manifest
from fashn_prefect.run.validate import ValidationReport, validate_manifest
from fashn_prefect.settings import FashnSettings

__all__ = ["CheckedRows", "RunRequest"]


class CheckedRows(BaseModel):
    """Rows already read and validated for a run: the decoded manifest and its report.

    Handed to :func:`~fashn_prefect.run.pipeline.run_predictions` as ``rows``, they are
    not validated again. As a flow parameter Prefect records only where they came from
    and how many there are, not the rows themselves.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    manifest: Manifest
    report: ValidationReport

    @model_serializer
    def _summary(self) -> dict[str, Any]:
        return {
            "source": self.manifest.url,
            "rows": self.report.total_rows,
            "valid": len(self.report.rows),
        }


@dataclass(frozen=True)
class RunRequest:
    """Everything a run takes besides its rows: where results go, the default model, the
    credentials, the credit budget, dry run or not, and the settings."""

    output: str
    model_name: str | None = None
    credentials: FashnCredentials | str | None = None
    budget: int | None = None
    dry_run: bool = False
    settings: FashnSettings = field(default_factory=FashnSettings)

    def flow_parameters(self) -> dict[str, Any]:
        """The request as keyword parameters of the run flows (``run_predictions``...).

        ``settings`` names the storage block only: its secrets stay out of parameters.
        """
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @cached_property
    def storage_options(self) -> dict[str, Any]:
        """The resolved fsspec options (the storage block's loaded once, on the worker).

        Never put them in a flow parameter, a log or an artifact.
        """
        return self.settings.resolved_storage_options()

    def read(self, manifest: str) -> Manifest:
        """Read the manifest at URL ``manifest`` with this request's storage options."""
        return read_manifest(manifest, storage_options=self.storage_options)

    def check(self, manifest: Manifest) -> CheckedRows:
        """Validate every row of ``manifest`` as this request's run will run it."""
        report = validate_manifest(
            manifest,
            model_name=self.model_name,
            storage_options=self.storage_options,
            allow_unknown_models=self.settings.allow_unknown_models,
        )
        return CheckedRows(manifest=manifest, report=report)
