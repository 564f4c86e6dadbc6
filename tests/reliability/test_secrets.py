"""Scenario 6: the API key never leaks, and is never sent over plain http off the machine.

Every other scenario scans its own logs, Prefect records, results tables, exceptions and
files for the key. This module adds the failure paths where a key is most likely to
surface: an API that rejects it, an API that cannot be reached, and a base URL that
would send it over plain http to another host (refused unless explicitly allowed, by
the client, the credentials block and the CLI alike).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
from _helpers import host_images, tryon_rows, write_manifest
from support import cli_env, prefect_texts, scan_for_secret

from fashn_prefect.api.client import FashnClient
from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.errors import ConfigurationError
from fashn_prefect.flows import run_manifest

CLI = str(Path(sys.executable).with_name("fashn-prefect"))

REFUSED = [
    "http://api.fashn.ai",
    "HTTP://API.FASHN.AI/",
    "http://10.1.2.3:8765",
    "http://192.168.0.10",
    "http://0.0.0.0:8765",
    "http://127.0.0.1.evil.example",
    "http://localhost.evil.example:80",
    "http://127.0.0.1@evil.example/",
    "http://[::ffff:10.0.0.1]/",
    "ftp://127.0.0.1/",
    "file:///etc/passwd",
    "https://user:pass@api.fashn.ai",
    "api.fashn.ai",
]
ACCEPTED = [
    "https://api.fashn.ai",
    "https://api.fashn.ai/",
    "http://127.0.0.1:8765",
    "http://127.9.9.9:1",
    "http://localhost:8765",
    "http://[::1]:8765",
]


@pytest.mark.parametrize("url", REFUSED)
def test_unsafe_base_urls_are_refused(url: str, secret_key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        FashnClient(api_key=secret_key, base_url=url)
    assert secret_key not in str(caught.value)
    with pytest.raises(ConfigurationError):
        FashnCredentials(api_key=secret_key, base_url=url).get_client()


@pytest.mark.parametrize("url", ACCEPTED)
def test_https_and_loopback_base_urls_are_accepted(url: str, secret_key: str) -> None:
    assert FashnClient(api_key=secret_key, base_url=url).base_url.startswith(("http", "https"))


def test_plain_http_elsewhere_only_when_explicitly_allowed(secret_key: str) -> None:
    url = "http://10.1.2.3:8765"
    assert FashnClient(api_key=secret_key, base_url=url, allow_insecure_base_url=True).base_url
    creds = FashnCredentials(api_key=secret_key, base_url=url, allow_insecure_base_url=True)
    assert creds.get_client().base_url == url
    for text in (repr(creds), str(creds), creds.model_dump_json(), repr(creds.get_client())):
        assert secret_key not in text


@pytest.mark.reliability
def test_cli_refuses_plain_http_to_another_host(tmp_path: Path, secret_key: str) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "row_id,model_name,model_image,garment_image\n"
        "r1,tryon-v1.6,http://127.0.0.1:9/m.png,http://127.0.0.1:9/g.png\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.run(
        [CLI, "run", str(manifest), "--output", str(tmp_path / "out"), "--quiet"],
        env=cli_env(home, "http://10.1.2.3:8765", secret_key),
        capture_output=True,
        timeout=180,
    )
    text = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 2, text
    assert "plain http" in text and "10.1.2.3" in text
    assert not (tmp_path / "out" / "ledger").exists()
    assert not scan_for_secret(secret_key, texts=[text], roots=[tmp_path])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.reliability
async def test_rejected_and_unreachable_keys_never_surface(
    prefect_harness: None,
    tmp_path: Path,
    secret_key: str,
    all_logs: list[str],
    fashn_emulator_factory: Any,
    report: Any,
) -> None:
    """The API rejects the key (401) / nothing listens: exceptions, logs, Prefect, files."""
    emu = fashn_emulator_factory(api_keys=("fa-the-only-valid-key",), time_scale=0.01)
    models, garments = host_images(emu, "rel")
    manifest = write_manifest(str(tmp_path / "m.csv"), tryon_rows(3, models, garments))
    texts: list[str] = []
    outcomes: dict[str, str] = {}
    for label, base_url in (
        ("rejected", emu.url),
        ("unreachable", f"http://127.0.0.1:{_closed_port()}"),
    ):
        with pytest.raises(Exception) as caught:
            await run_manifest(
                manifest,
                str(tmp_path / label),
                credentials=FashnCredentials(api_key=secret_key, base_url=base_url),
                time_scale=0.01,
                retries=0,
                shared_limits=False,
            )
        outcomes[label] = type(caught.value).__name__
        texts += [
            str(caught.value),
            repr(caught.value),
            "".join(traceback.format_exception(caught.value)),
        ]
        for link in _chain(caught.value):
            texts += [repr(link), repr(getattr(link, "request", None)), str(vars(link))]
    texts += [*all_logs, *await prefect_texts()]
    leaks = scan_for_secret(secret_key, texts=texts, roots=[tmp_path])
    result = report.scenario("6 secrets (failure paths)")
    result.counts.update(
        {
            "rows": 6,
            "faults injected": f"{len(REFUSED)} unsafe URLs, 401, refused connection",
            "retries": 0,
            "duplicates": 0,
            "bytes stored": 0,
        }
    )
    result.figures.update(
        {
            "refused_urls": len(REFUSED),
            "accepted_urls": len(ACCEPTED),
            **outcomes,
            "texts_scanned": len(texts),
            "secret_hits": len(leaks),
        }
    )
    result.invariants.update({"secret": "ok" if not leaks else "LEAKED"})
    assert outcomes["rejected"] == "UnauthorizedAccess", outcomes
    assert not leaks, [t[:300] for t in texts if secret_key in t][:3]


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
