"""The package as a user gets it: a wheel installed into a fresh virtual environment.

The wheel is built from a copy of the source and installed (with its dependencies, from
the pinned constraints) into a venv outside the repository; every command then runs
from a scratch directory with a clean environment, so nothing can come from this
checkout. From there:

- a user-written flow maps ``run_prediction`` over 20 inputs against the emulator
  (examples/tasks_in_your_flow.py): every prediction completes, its output is stored,
  the emulator never served a 429 and never saw more than 6 in flight;
- ``run_predictions`` runs a pandas DataFrame and writes the results table;
- every deployment's entrypoint in deployments/prefect.yaml loads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FASHN_"))}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    env["PREFECT_HOME"] = str(home)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    # A first start migrates a fresh database; on a loaded CI machine that takes a while.
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
    env["PREFECT_SERVER_LOGGING_LEVEL"] = "WARNING"
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed() -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """``(python of the fresh venv, a scratch directory, its environment)``.

    The venv lives in its own temporary directory, not under pytest's basetemp, which
    other pytest sessions on the machine prune while this one still needs it.
    """
    root = Path(tempfile.mkdtemp(prefix="fashn-prefect-wheel-"))
    try:
        yield _install(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _install(root: Path) -> tuple[Path, Path, dict[str, str]]:
    source = root / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    env = _clean_env(root / "prefect-home")
    wheels = root / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), "."],
        source,
        env,
    )
    [wheel] = list(wheels.glob("fashn_prefect-*.whl"))
    venv = root / "venv"
    # No pip in the venv: this environment's pip (pinned, recent) installs into it
    # (``pip --python``), several times faster than the one ``venv`` bundles; and no .pyc
    # written ahead (an import compiles what it needs). The venv still gets the wheel and
    # nothing else but what its metadata requires.
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root, env)
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-compile",
            "-c",
            str(REPO / "constraints.txt"),
            str(wheel),
        ],
        root,
        env,
    )
    scratch = root / "scratch"
    scratch.mkdir()
    return python, scratch, env


def test_the_package_is_imported_from_the_fresh_venv(installed):
    python, scratch, env = installed
    where = _run(
        [str(python), "-c", "import fashn_prefect; print(fashn_prefect.__file__)"], scratch, env
    )
    assert str(python.parents[1]) in where and str(REPO) not in where


def test_a_user_flow_maps_run_prediction_and_run_predictions_takes_a_dataframe(installed):
    python, scratch, env = installed
    example = scratch / "tasks_in_your_flow.py"
    shutil.copy(REPO / "examples" / "tasks_in_your_flow.py", example)
    output = scratch / "out"

    stdout = _run(
        [str(python), str(example), "--count", "20", "--output", str(output), "--json"],
        scratch,
        env,
    )

    report = json.loads(stdout[stdout.index("{") : stdout.rindex("}") + 1])
    assert report["predictions"] == report["completed"] == 20
    assert report["stored_outputs"] == 20
    assert len(list((output / "tryons" / "images").iterdir())) == 20
    assert report["rejected_429"] == 0
    assert 1 <= report["peak_in_flight"] <= 6
    assert report["dataframe_rows"]["completed"] == 4
    results = report["dataframe_results"].removeprefix("file://")
    assert Path(results).is_file() and Path(results).is_relative_to(output / "catalog")


def test_every_deployment_entrypoint_loads_from_the_installed_package(installed):
    python, scratch, env = installed
    config = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    entrypoints = [d["entrypoint"] for d in config["deployments"]]
    assert entrypoints and all(not e.split(":")[0].endswith(".py") for e in entrypoints)
    assert config.get("pull") == []  # nothing to check out on a worker

    script = (
        "import json, sys\n"
        "from prefect.flows import load_flow_from_entrypoint\n"
        "print(json.dumps([load_flow_from_entrypoint(e).name for e in sys.argv[1:]]))\n"
    )
    names = json.loads(_run([str(python), "-c", script, *entrypoints], scratch, env))
    assert names == ["fashn-catalog-run", "fashn-backfill", "fashn-credit-audit"]
