"""How much the order in which rows start matters, with no overhead at all.

A simulation, not a run: jobs of the benchmark mix (:data:`common.MIX`) get latencies
drawn like the emulator's (the documented range plus 0.7-3.0 s of starting and queueing),
and six slots take them one after another (list scheduling, zero delay). The makespan in
manifest order and in the order :func:`fashn_prefect.run.plan.launch_order` gives
(longest expected latency first, from the documented range) is compared with the bound of
:func:`common.makespan_bound`. It isolates the part of the gap to the bound that only the
order causes: the tail where one long job runs alone.

    .venv/bin/python benchmarks/launch_order.py [--seeds 20]
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_IN_FLIGHT, Table, emit, make_jobs, makespan_bound

from fashn_prefect.api import specs as model_specs
from fashn_prefect.run.plan import Plan, PlannedRow, launch_order
from fashn_prefect.run.validate import RowSpec


def makespan(durations: list[float], order: Iterable[int], slots: int = DEFAULT_IN_FLIGHT) -> float:
    """When the last job ends if each job starts as soon as a slot is free."""
    free = [0.0] * slots
    end = 0.0
    for i in order:
        start = heapq.heappop(free)
        end = max(end, start + durations[i])
        heapq.heappush(free, start + durations[i])
    return end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--rows", default="24,48,72")
    args = parser.parse_args()
    urls = {"person": ["https://x/p.png"], "garment": ["https://x/g.png"]}
    table = Table(
        "Launch order alone (simulated, zero overhead, six slots)",
        ["rows", "manifest order / bound", "longest first / bound"],
    )
    for n in (int(r) for r in args.rows.split(",")):
        manifest = longest = 0.0
        for seed in range(args.seeds):
            rng = random.Random(seed)
            jobs = make_jobs(n, urls, seed=seed)
            durations = []
            for job in jobs:
                low, high = model_specs.expected_latency(job.model_name, job.inputs)
                durations.append(
                    rng.uniform(low, high) + rng.uniform(0.2, 1.0) + rng.uniform(0.5, 2.0)
                )
            bound = makespan_bound([{"created_at": 0.0, "completed_at": d} for d in durations])
            specs = [
                RowSpec(i + 1, job.row_id, job.model_name, job.inputs, {}, "", 1)
                for i, job in enumerate(jobs)
            ]
            plan = Plan([PlannedRow(spec, "submit") for spec in specs])

            def expected(spec: RowSpec) -> float:
                return sum(model_specs.expected_latency(spec.model_name, spec.inputs)) / 2

            manifest += bound.value / makespan(durations, range(n))
            longest += bound.value / makespan(durations, launch_order(plan, expected))
        table.add(n, manifest / args.seeds, longest / args.seeds)
    table.notes.append(
        f"Mean over {args.seeds} seeds of bound / makespan; the bound is the benchmarks' "
        "(sum of durations / 6, the run-rate window, the longest job). Jobs start without "
        "the run-rate window, so keep to a few dozen rows, where the slots bind."
    )
    emit("launch_order", [table])


if __name__ == "__main__":
    main()
