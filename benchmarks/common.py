"""Shared pieces of the benchmarks: an emulator in a child process, the workload, the bound.

Run as ``python benchmarks/common.py emulator '<EmulatorConfig JSON>'`` to serve the emulator
in the foreground of a child process (the parent stops it by closing stdin), so the client's
CPU time can be measured apart from the emulator's.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import json
import math
import os
import platform
import random
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The FASHN defaults (emulated seconds).
DEFAULT_IN_FLIGHT = 6
RUN_LIMIT = (50, 60.0)
STATUS_LIMIT = (50, 10.0)


# --------------------------------------------------------------------------- emulator child


class EmulatorProcess:
    """The FASHN emulator served by a separate Python process on a loopback port."""

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.api_key = ""
        self.clock_start = 0.0
        self.time_scale = 1.0
        self._http: httpx.Client | None = None

    def __enter__(self) -> EmulatorProcess:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "emulator", json.dumps(self.config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            # This checkout's emulator, even when a baseline revision's package is first
            # on PYTHONPATH (benchmarks compare old and new client code on one emulator).
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("emulator child did not start")
        info = json.loads(line)
        self.url, self.api_key = info["url"], info["api_key"]
        self.clock_start = float(info["clock_start"])
        self.time_scale = float(self.config.get("time_scale", 1.0))
        self._http = httpx.Client(base_url=self.url, trust_env=False, timeout=60.0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._http is not None:
            self._http.close()
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def http(self) -> httpx.Client:
        assert self._http is not None
        return self._http

    def stats(self) -> dict[str, Any]:
        """The emulator's stats document."""
        response = self.http.get("/_emulator/stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def put_file(self, name: str, data: bytes, content_type: str) -> str:
        """Host ``data`` at ``/files/<name>``; returns its URL."""
        response = self.http.put(
            f"/_emulator/files/{name}", content=data, headers={"Content-Type": content_type}
        )
        response.raise_for_status()
        return f"{self.url}/files/{name}"

    def emulated(self, monotonic: float) -> float:
        """The emulator's clock reading (emulated seconds) at a ``time.monotonic()`` instant."""
        return (monotonic - self.clock_start) / self.time_scale

    def cpu_seconds(self) -> float:
        """CPU seconds the emulator process has used so far."""
        assert self.proc is not None
        return proc_cpu(self.proc.pid)


def _serve_emulator(config_json: str) -> None:
    from fashn_prefect.emulator import EmulatorConfig, EmulatorServer

    raw = json.loads(config_json)
    for key in ("run_limit", "status_limit", "credits_limit", "latency_multiplier_after"):
        if key in raw:
            raw[key] = tuple(raw[key])
    server = EmulatorServer(EmulatorConfig(**raw)).start()
    # CLOCK_MONOTONIC is system-wide, so the parent can convert its instants to emulated time.
    clock_start = server.app.emulator.clock._start
    info = {"url": server.url, "api_key": server.api_key, "clock_start": clock_start}
    print(json.dumps(info), flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop()


# --------------------------------------------------------------------------- CPU and memory


def proc_cpu(pid: int) -> float:
    """utime + stime of one process in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(pid: int) -> list[int]:
    """Every live descendant process of ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def children_cpu(exclude: Iterable[int] = ()) -> float:
    """CPU seconds of this process's live descendants (e.g. a Prefect test server)."""
    skip = set(exclude)
    return sum(proc_cpu(p) for p in descendants(os.getpid()) if p not in skip)


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- workload

# (weight, model, fixed inputs); image fields are filled from the uploaded files.
MIX: list[tuple[float, str, dict[str, Any]]] = [
    (0.25, "tryon-v1.6", {"mode": "performance"}),
    (0.25, "tryon-v1.6", {"mode": "balanced"}),
    (0.10, "tryon-v1.6", {"mode": "quality"}),
    (0.15, "background-remove", {}),
    (0.10, "product-to-model", {"generation_mode": "fast", "resolution": "1k"}),
    (0.10, "tryon-max", {"generation_mode": "balanced", "resolution": "1k"}),
    (0.05, "edit", {"generation_mode": "fast", "resolution": "1k", "prompt": "red jacket"}),
]
IMAGE_FIELDS = {
    "tryon-v1.6": {"model_image": "person", "garment_image": "garment"},
    "background-remove": {"image": "person"},
    "product-to-model": {"product_image": "garment"},
    "tryon-max": {"model_image": "person", "product_image": "garment"},
    "edit": {"image": "person"},
}
QUEUE_MEAN = 0.6 + 1.25  # emulator: starting U(0.2,1.0) + in_queue U(0.5,2.0)


@dataclass(frozen=True)
class Job:
    """One prediction of the workload."""

    row_id: str
    model_name: str
    inputs: dict[str, Any]


def png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    """A small solid-colour PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def upload_images(emulator: EmulatorProcess, count: int = 8) -> dict[str, list[str]]:
    """Put ``count`` person and garment images on the emulator's file host."""
    urls: dict[str, list[str]] = {"person": [], "garment": []}
    for i in range(count):
        urls["person"].append(
            emulator.put_file(f"person-{i}.png", png((96, 144), (150 + i, 110, 90)), "image/png")
        )
        urls["garment"].append(
            emulator.put_file(f"garment-{i}.png", png((96, 96), (20, 40 + i, 200)), "image/png")
        )
    return urls


def make_jobs(n: int, urls: dict[str, list[str]], seed: int = 7) -> list[Job]:
    """``n`` jobs drawn from :data:`MIX` (deterministic for a seed)."""
    rng = random.Random(seed)
    weights = [w for w, _, _ in MIX]
    jobs = []
    for i in range(n):
        _, model, fixed = rng.choices(MIX, weights)[0]
        inputs = dict(fixed)
        for name, kind in IMAGE_FIELDS[model].items():
            inputs[name] = urls[kind][rng.randrange(len(urls[kind]))]
        jobs.append(Job(f"job-{i:05d}", model, inputs))
    return jobs


def expected_mean_duration() -> float:
    """Mean emulated in-flight time of a job of :data:`MIX` (queue + processing)."""
    from fashn_prefect.api import specs

    total = 0.0
    for weight, model, fixed in MIX:
        inputs = {name: "https://x/y.png" for name in IMAGE_FIELDS[model]} | fixed
        low, high = specs.expected_latency(model, inputs)
        total += weight * ((low + high) / 2 + QUEUE_MEAN)
    return total / sum(w for w, _, _ in MIX)


def write_manifest_csv(path: Path, jobs: Sequence[Job]) -> None:
    """A manifest with ``row_id``, ``model_name`` and one column per input."""
    import csv

    columns: list[str] = []
    for job in jobs:
        columns += [c for c in job.inputs if c not in columns]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["row_id", "model_name", *columns])
        writer.writeheader()
        for job in jobs:
            writer.writerow({"row_id": job.row_id, "model_name": job.model_name, **job.inputs})


# --------------------------------------------------------------------------- the bound


@dataclass
class Bound:
    """A makespan no client can beat, in emulated seconds, from the actual durations."""

    jobs: int
    durations: list[float]
    concurrency: float
    rate: float
    longest: float

    @property
    def value(self) -> float:
        return max(self.concurrency, self.rate, self.longest)

    @property
    def binding(self) -> str:
        named = {"concurrency": self.concurrency, "rate": self.rate, "longest": self.longest}
        return max(named, key=lambda k: named[k])


def makespan_bound(
    predictions: list[dict[str, Any]],
    in_flight: int = DEFAULT_IN_FLIGHT,
    run_limit: tuple[int, float] = RUN_LIMIT,
) -> Bound:
    """max(sum of in-flight durations / concurrency, submission-rate bound, longest job).

    A job holds an in-flight slot from ``created_at`` to ``completed_at`` (the emulator's
    own record of each prediction). Submission-rate bound: with R runs per W seconds, at
    least ``n - R*g`` jobs cannot be submitted before ``g*W`` (g = 1, 2, ...), and those
    jobs still need at least the sum of the ``n - R*g`` shortest durations divided by the
    concurrency, and at least the ``(n - R*g)``-th shortest duration, after it.
    """
    durations = [
        p["completed_at"] - p["created_at"] for p in predictions if p["completed_at"] is not None
    ]
    if not durations:
        return Bound(0, [], 0.0, 0.0, 0.0)
    n = len(durations)
    requests, window = run_limit
    ordered = sorted(durations)
    rate = 0.0
    for g in range(1, math.ceil(n / requests)):
        late = n - requests * g
        after = max(sum(ordered[:late]) / in_flight, ordered[late - 1])
        rate = max(rate, g * window + after)
    return Bound(n, durations, sum(durations) / in_flight, rate, max(durations))


def zero_delay_replay(
    predictions: list[dict[str, Any]],
    in_flight: int = DEFAULT_IN_FLIGHT,
    run_limit: tuple[int, float] = RUN_LIMIT,
) -> float:
    """The in-flight span of a client with no delay at all, running the same jobs in the
    order they were submitted: each one submitted the moment a slot is free and the
    run-rate window allows, and seen finished the moment it finishes.

    The gap between :func:`makespan_bound` and this is the tail of the last wave, which
    no client that does not know each job's duration in advance can avoid; the gap
    between this and a run's own span is what its polling and hand-offs cost.
    """
    jobs = sorted(
        (p["created_at"], p["completed_at"] - p["created_at"])
        for p in predictions
        if p["completed_at"] is not None
    )
    if not jobs:
        return 0.0
    requests, window = run_limit
    slots = [0.0] * in_flight
    starts: list[float] = []
    for _, duration in jobs:
        start = heapq.heappop(slots)
        if len(starts) >= requests:
            start = max(start, starts[-requests] + window)
        starts.append(start)
        heapq.heappush(slots, start + duration)
    return max(slots)


# --------------------------------------------------------------------------- reporting


@dataclass
class Table:
    """A Markdown table with a title and notes."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([fmt(c) for c in cells])

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def fmt(value: object) -> str:
    """Compact cell text."""
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


PERFORMANCE_DOCS = ROOT.parent / "docs" / "performance"
"""The performance pages' data: ``make bench`` writes each benchmark's tables here."""
_START, _END = "<!-- latest-run:start -->", "<!-- latest-run:end -->"


def emit(name: str, tables: Sequence[Table]) -> str:
    """Print the tables and write them into ``docs/performance/<name>.md``.

    They replace the page's "latest run" section (between its markers, added at the end
    when missing), headed by the command and the commit that produced them; the rest of
    the page (how to read the tables, earlier runs) is kept. Figures change when a
    benchmark runs, never by hand.
    """
    text = "\n".join(t.markdown() for t in tables)
    print(text, flush=True)
    command = shlex.join(["python", f"benchmarks/{name}.py", *sys.argv[1:]])
    section = (
        f"{_START}\n## Latest run\n\nWritten by `{command}` at commit {_commit()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n{text}\n{_END}"
    )
    page = PERFORMANCE_DOCS / f"{name}.md"
    old = page.read_text() if page.exists() else ""
    if _START in old and _END in old:
        new = old[: old.index(_START)] + section + old[old.index(_END) + len(_END) :]
    else:
        new = f"{old.rstrip()}\n\n{section}\n" if old else f"{section}\n"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(new)
    return text


def _commit() -> str:
    """``abc1234`` (and "with uncommitted changes" when the checkout has any)."""
    git = ["git", "-C", str(ROOT.parent)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"`{head}`" + (" with uncommitted changes" if dirty.stdout.strip() else "")


def machine() -> str:
    """One line describing the machine and the versions measured."""
    import fashn
    import prefect

    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, prefect {prefect.__version__}, "
        f"fashn SDK {fashn.__version__}"
    )


def load_note(started: tuple[float, float, float]) -> str:
    """The machine description plus the load average (other processes compete for the CPUs)."""
    now = os.getloadavg()
    return (
        f"Machine: {machine()}. Load average (1 min) at the start / end of this script: "
        f"{started[0]:.2f} / {now[0]:.2f}."
    )


def log(message: str) -> None:
    """Progress line on stderr (stdout carries only the tables)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "emulator":
        _serve_emulator(sys.argv[2])
    else:
        sys.exit("usage: common.py emulator '<EmulatorConfig JSON>'")


@contextlib.contextmanager
def baseline(revision: str) -> Iterator[Path]:
    """The repository at ``revision``, checked out into a temporary git worktree."""
    repo = ROOT.parent
    path = Path(tempfile.mkdtemp(prefix="fashn-baseline-"))
    git = ["git", "-C", str(repo)]
    subprocess.run([*git, "worktree", "add", "--detach", str(path), revision], check=True)
    try:
        yield path
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(path)], check=False)
