"""fashn-prefect: dependable Prefect pipelines for the FASHN API."""

__version__ = "0.1.0"
