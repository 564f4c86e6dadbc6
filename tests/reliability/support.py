"""Helpers of the reliability suite only: the scenario report, the storage audit, the
secret scan and process control. Manifests, ground truth and the invariants every
scenario checks (``check_invariants``) are shared with the other suites in
``tests/_helpers.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import pyarrow.parquet as pq
from PIL import Image

TIME_SCALE = 0.01
MODEL = "tryon-v1.6"


# --------------------------------------------------------------------------- the report


COLUMNS = ("rows", "faults injected", "retries", "duplicates", "bytes stored")


@dataclass
class ScenarioResult:
    """One scenario's headline counts, detailed figures and invariant outcomes."""

    name: str
    counts: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    invariants: dict[str, str] = field(default_factory=dict)


class Report:
    """Session-wide collector; printed at the end of the run and written as Markdown."""

    def __init__(self) -> None:
        self.results: list[ScenarioResult] = []

    def scenario(self, name: str) -> ScenarioResult:
        result = ScenarioResult(name)
        self.results.append(result)
        return result

    def markdown(self) -> str:
        """The scenarios x invariants table (headline counts), then every figure."""
        lines = [
            "| scenario | " + " | ".join(COLUMNS) + " | invariants |",
            "|---|" + "---:|" * len(COLUMNS) + "---|",
        ]
        for r in self.results:
            counts = " | ".join(str(r.counts.get(c, "-")) for c in COLUMNS)
            invariants = ", ".join(f"{k}: {v}" for k, v in r.invariants.items())
            lines.append(f"| {r.name} | {counts} | {invariants} |")
        lines.append("")
        for r in self.results:
            figures = ", ".join(f"{k}={v}" for k, v in r.figures.items())
            lines.append(f"- **{r.name}**: {figures}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- storage audit


def audit_tree(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, int]:
    """List and read every object under ``root``: Parquet must parse, images must decode.

    Returns counts; raises AssertionError on a partial or corrupt object under a name that
    readers use. A SIGKILL in the middle of a local write can leave the hidden
    ``.tmp-<uuid>`` file that ``atomic_write`` renames into place; every reader skips hidden
    names (``storage.is_hidden``), so such leftovers are counted, not read.
    """
    counts = Counter[str]()
    try:
        paths = fs.find(root)
    except FileNotFoundError:
        return dict(counts)
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        folder = path[len(root) :].strip("/").split("/", 1)[0]
        if name.startswith(".tmp-"):
            counts["hidden_temp_leftovers"] += 1
            continue
        data = fs.cat_file(path)
        if name.endswith(".parquet"):
            pq.read_table(io.BytesIO(data))
            counts["ledger_snapshots" if folder == "ledger" else "parquet"] += 1
        elif folder == "images":
            with Image.open(io.BytesIO(data)) as image:
                image.load()
            counts["images"] += 1
        elif name.endswith(".json"):
            json.loads(data)
            counts["json"] += 1
        elif folder == "thumbnails":
            with Image.open(io.BytesIO(data)) as image:
                image.load()
            counts["thumbnails"] += 1
        elif name.endswith(".html"):
            assert data.rstrip().endswith(b"</html>"), f"truncated page: {path}"
            counts["html"] += 1
        else:
            counts["other"] += 1
    return dict(counts)


# --------------------------------------------------------------------------- secrets


def scan_for_secret(
    secret: str, *, texts: Iterable[str] = (), roots: Iterable[Path] = ()
) -> list[str]:
    """Where ``secret`` appears: in any of ``texts`` or any file under ``roots``."""
    found = [f"text #{i}" for i, t in enumerate(texts) if secret in t]
    needle = secret.encode()
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for name in files:
                path = Path(dirpath) / name
                try:
                    if needle in path.read_bytes():
                        found.append(str(path))
                except OSError:
                    continue
    return found


# --------------------------------------------------------------------------- processes


def session_processes(sid: int) -> list[int]:
    """Live processes in session ``sid`` (our killed CLI's group and its children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def kill_session(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to every process of ``proc``'s session (started with a new session)."""
    for _ in range(50):
        pids = session_processes(proc.pid)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(0.05)
    proc.wait(timeout=30)


def proc_memory_mb(pid: int) -> tuple[float, float] | None:
    """(current RSS, peak RSS) of process ``pid`` in MB, from /proc; None once it has exited."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss = re.search(r"VmRSS:\s+(\d+)\s+kB", text)
    hwm = re.search(r"VmHWM:\s+(\d+)\s+kB", text)
    if not rss or not hwm:
        return None
    return int(rss.group(1)) / 1024, int(hwm.group(1)) / 1024


def cli_env(home: Path, base_url: str, key: str, log_level: str = "DEBUG") -> dict[str, str]:
    """Environment for a ``fashn-prefect`` CLI subprocess: a private PREFECT_HOME (its own
    ephemeral server and database), the emulator's URL and the secret key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FASHN_"))}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_LOGGING_LEVEL=log_level,
        FASHN_API_KEY=key,
        FASHN_BASE_URL=base_url,
    )
    return env


async def prefect_texts(page: int = 200) -> list[str]:
    """Everything the current Prefect API stored: flow-run parameters and states, task-run
    names, states and messages, artifacts, and every log line (for the secret scan)."""
    from prefect.client.orchestration import get_client

    texts: list[str] = []
    async with get_client() as client:
        for kind in ("flow_runs", "task_runs", "artifacts", "logs"):
            read = getattr(client, f"read_{kind}")
            offset = 0
            while True:
                batch = await read(limit=page, offset=offset)
                texts += [item.model_dump_json() for item in batch]
                if len(batch) < page:
                    break
                offset += page
    return texts
