"""Shared fixtures: a Prefect test server, S3 on a local moto server, and output helpers.

None of them is autouse: a test asks for what it needs. Tests marked ``unit`` (the inner
loop, ``make unit``) are held to their promise instead: they may not start a server nor
sleep, and fail at once if they try.

* ``prefect_harness`` (session): a temporary Prefect API server and database
  (``prefect_test_harness``); ``PREFECT_API_URL`` points at it while it runs. The one
  harness of every suite (the reliability suite included).
* ``moto_server`` (session): a moto S3 server on a free loopback port.
* ``s3_storage_options``: s3fs options for that server (dummy keys, loopback endpoint).
* ``s3_bucket``: a fresh, empty bucket per test; yields ``s3://<bucket>``.

The test files run slowest first (:func:`pytest_collection_modifyitems`), so that
``make test``'s workers (``--dist loadfile``) start the long ones at once instead of
ending on them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from _servers import free_port

# The slowest test files, slowest first (measured alone with --durations on 2 cores;
# CONTRIBUTING.md, "Test suite timings"). ``make test``'s workers take them first
# (pytest_collection_modifyitems, pytest_xdist_make_scheduler), so that none of them
# starts late and ends the run.
SLOWEST_FILES = (
    "tests/scenarios/test_deployments.py",
    "tests/scheduler/test_leases.py",
    "tests/scheduler/test_leases_killed.py",
    "tests/cli/test_cli_logs.py",
    "tests/jobs/test_backfill_killed.py",
    "tests/test_wheel.py",
    "tests/scenarios/test_events_states.py",
    "tests/jobs/test_backfill.py",
    "tests/cli/test_demo.py",
)

_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` in collection order (pytest-xdist's default puts the files with
    the most tests first, which put the slowest files, of a few tests each, at the end of
    a run), and a worker busy with a slow file takes a quick one next (tests/_schedule.py)."""
    if config.getoption("dist") != "loadfile":
        return None
    from _schedule import SlowFilesFirst

    config.option.loadscopereorder = False
    scheduler = SlowFilesFirst(config, log)
    scheduler.slow = frozenset(SLOWEST_FILES)
    return scheduler


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the test files for pytest-xdist's workers: the :data:`SLOWEST_FILES`, then the
    other files that start servers or sleep, then the files of ``unit`` tests alone (quick,
    they fill the gaps at the end). Each file's tests stay together and in their order,
    and the other files keep theirs."""
    rank = {path: i for i, path in enumerate(SLOWEST_FILES)}
    files: dict[str, int] = {}
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        unit = item.get_closest_marker("unit") is not None
        group = rank.get(path, len(rank) + (1 if unit else 0))
        files[path] = min(files.get(path, group), group)
    items.sort(key=lambda item: files[item.nodeid.split("::", 1)[0]])


@pytest.fixture(autouse=True)
def _unit_tests_start_no_server_and_sleep_for_nothing(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``unit`` test that listens on a socket or sleeps in real time fails at once."""
    if request.node.get_closest_marker("unit") is None:
        return
    import socket
    import time

    def no_server(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a unit test may not start a server (mark it otherwise)")

    real_sleep = time.sleep

    def no_sleep(seconds: float) -> None:
        if seconds > 0.05:
            raise AssertionError(f"a unit test may not sleep ({seconds} s)")
        real_sleep(seconds)

    monkeypatch.setattr(socket.socket, "listen", no_server)
    monkeypatch.setattr(time, "sleep", no_sleep)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server and database for in-process flow runs (never ~/.prefect)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    saved = {name: os.environ.get(name) for name in _AWS_ENV}
    os.environ.update(_AWS_ENV)  # so no real AWS credentials can ever be picked up
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def s3_storage_options(moto_server: str) -> dict[str, Any]:
    """s3fs ``storage_options`` for the moto server."""
    return {
        "key": _AWS_ENV["AWS_ACCESS_KEY_ID"],
        "secret": _AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "client_kwargs": {"endpoint_url": moto_server},
        "use_listings_cache": False,
    }


@pytest.fixture
def s3_bucket(s3_storage_options: dict[str, Any]) -> str:
    """A fresh, empty bucket for this test; returns ``s3://<bucket>``."""
    import fsspec

    fs = fsspec.filesystem("s3", **s3_storage_options)
    name = f"test-{uuid.uuid4().hex[:16]}"
    fs.mkdir(name)
    return f"s3://{name}"
