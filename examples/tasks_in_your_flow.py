"""Use fashn-prefect's tasks in your own Prefect flow.

Runs offline: it starts the bundled FASHN API emulator, maps ``run_prediction`` over a
set of garments in a flow of your own, then runs a pandas DataFrame of rows through
``run_predictions`` (the manifest flow's machinery, without a file). Against the real
API, drop the emulator and pass your ``FashnCredentials`` block (or set FASHN_API_KEY).

    python examples/tasks_in_your_flow.py --count 20 --output ./example-output
    python examples/tasks_in_your_flow.py --json      # the figures, for scripts and tests
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from fashn_prefect import FashnCredentials, FashnSettings
from fashn_prefect.cli.demo_images import garment, model
from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.flows import run_predictions
from fashn_prefect.tasks import PredictionResult, run_prediction


# Twenty worker threads, so the tasks *could* run twenty at once: the account scheduler
# is what keeps them at the API's six in flight and inside its rate windows.
@flow(task_runner=ThreadPoolTaskRunner(max_workers=20))
def dress_the_catalog(
    person: str,
    garments: list[str],
    output: str,
    credentials: FashnCredentials,
    settings: FashnSettings,
) -> list[PredictionResult]:
    """One virtual try-on per garment; outputs stored under ``{output}/images/``."""
    futures = run_prediction.map(
        "tryon-v1.6",
        [{"model_image": person, "garment_image": g, "category": "tops"} for g in garments],
        credentials=unmapped(credentials),
        output=output,
        settings=unmapped(settings),
    )
    return list(futures.result())


def write_images(folder: Path, count: int) -> tuple[str, list[str]]:
    """A person and ``count`` garment PNGs (drawn locally, no network)."""
    folder.mkdir(parents=True, exist_ok=True)
    name, data = model(0)
    person = folder / f"{name}.png"
    person.write_bytes(data)
    garments = []
    for index in range(count):
        name, data = garment(index)
        path = folder / f"{name}-{index}.png"
        path.write_bytes(data)
        garments.append(str(path))
    return str(person), garments


def main(count: int, output: Path, as_json: bool) -> dict[str, Any]:
    """Run both examples against a time-compressed emulator; return what happened."""
    person, garments = write_images(output / "inputs", count)
    # The emulator keeps the real API's limits (6 in flight, 50 runs/60 s, 50 status/10 s)
    # on a clock 50x faster; the settings tell the client the same time scale.
    with EmulatorServer(EmulatorConfig(time_scale=0.02, seed=7)) as emulator:
        credentials = FashnCredentials(api_key=emulator.api_key, base_url=emulator.url)
        settings = FashnSettings(time_scale=0.02, check_balance=False)
        results = dress_the_catalog(person, garments, str(output / "tryons"), credentials, settings)
        stats = emulator.stats()
        rows = pd.DataFrame(
            {
                "row_id": [f"SKU-{i:04d}" for i in range(4)],
                "model_name": "tryon-v1.6",
                "model_image": person,
                "garment_image": garments[:4],
                "category": "tops",
            }
        )
        # run_predictions is an async flow, like run_manifest: await it, or asyncio.run it.
        summary = asyncio.run(
            run_predictions(
                rows, str(output / "catalog"), credentials=credentials, settings=settings
            )
        )
    report = {
        "predictions": len(results),
        "completed": sum(r.status == "completed" for r in results),
        "stored_outputs": sum(len(r.output_uris) for r in results),
        "credits_charged": sum(r.credits_charged for r in results),
        "peak_in_flight": stats["peak_in_flight"],
        "rejected_429": sum(
            stats["rejected"].get(name, 0)
            for name in ("RateLimitExceeded", "ConcurrencyLimitExceeded")
        ),
        "dataframe_rows": summary["totals"],
        "dataframe_results": summary["results"],
    }
    print(json.dumps(report, indent=2) if as_json else _describe(report))
    return report


def _describe(report: dict[str, Any]) -> str:
    return (
        f"{report['completed']}/{report['predictions']} try-ons completed, "
        f"{report['stored_outputs']} images stored, {report['credits_charged']} credits; "
        f"peak {report['peak_in_flight']} in flight, {report['rejected_429']} 429s.\n"
        f"DataFrame run: {report['dataframe_rows']}; results table "
        f"{report['dataframe_results']}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="garments to try on")
    parser.add_argument("--output", type=Path, default=Path("example-output"))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    main(args.count, args.output, args.json)
