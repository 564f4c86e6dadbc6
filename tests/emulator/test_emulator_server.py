"""EmulatorServer lifecycle, control surface, the CLI command and create_app."""

from __future__ import annotations

import httpx
import pytest
import typer
from typer.testing import CliRunner

from fashn_prefect.emulator import (
    DEFAULT_API_KEY,
    EmulatorConfig,
    EmulatorServer,
    FaultConfig,
    create_app,
)
from fashn_prefect.emulator.cli import emulator_command


def test_server_binds_free_port_and_stops_cleanly() -> None:
    with EmulatorServer(EmulatorConfig(time_scale=0.01)) as server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.api_key == DEFAULT_API_KEY
        with httpx.Client(trust_env=False) as client:
            response = client.get(
                f"{server.url}/v1/credits", headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"}
            )
        assert response.status_code == 200
        url = server.url
    with pytest.raises(httpx.ConnectError), httpx.Client(trust_env=False) as client:
        client.get(f"{url}/v1/credits")


def test_two_servers_run_side_by_side() -> None:
    with EmulatorServer() as one, EmulatorServer() as two:
        assert one.port != two.port


def test_refuses_non_loopback_host() -> None:
    with pytest.raises(ValueError, match="loopback"):
        EmulatorServer(host="0.0.0.0")


def test_reset_and_clock_and_files() -> None:
    config = EmulatorConfig(time_scale=0.01, subscription_credits=3, on_demand_credits=10)
    with EmulatorServer(config) as server:
        headers = {"Authorization": f"Bearer {server.api_key}"}
        with httpx.Client(base_url=server.url, headers=headers, trust_env=False) as client:
            url = server.put_file("a/b.png", b"\x89PNG....", "image/png")
            assert url == f"{server.url}/files/a/b.png"
            served = client.get(url)
            assert (
                served.content == b"\x89PNG...." and served.headers["content-type"] == "image/png"
            )
            assert client.get("/files/nothing").status_code == 404
            client.get("/v1/credits")
            server.set_faults(run_5xx=0.5)
            advanced = client.post("/_emulator/clock/advance", json={"seconds": 100}).json()
            assert advanced["now"] >= 100
            assert client.post("/_emulator/clock/advance", json={"seconds": -1}).status_code == 400
            server.reset()
            stats = server.stats()
            assert stats["requests"] == {} and stats["predictions"] == []
            assert stats["credits"] == {"total": 13, "subscription": 3, "on_demand": 10}
            assert client.get("/_emulator/faults").json()["run_5xx"] == 0.0
        with pytest.raises(ValueError):
            server.set_faults(nonsense=1)


@pytest.mark.parametrize("value", [-1, "x", True])
def test_set_faults_validates(value: object) -> None:
    with EmulatorServer() as server, pytest.raises(ValueError):
        server.set_faults(run_5xx=value)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        EmulatorConfig(api_keys=())
    with pytest.raises(ValueError):
        EmulatorConfig(time_scale=0)
    assert FaultConfig().failure_marker == "emulator-fail:"


def test_create_app_returns_asgi_app() -> None:
    app = create_app(EmulatorConfig())
    assert callable(app)
    assert app.emulator.config.api_keys == (DEFAULT_API_KEY,)


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(emulator_command)
    return app


def test_cli_refuses_remote_host_without_flag() -> None:
    result = CliRunner().invoke(_cli(), ["--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code != 0
    assert "allow-remote" in result.output


def test_cli_rejects_bad_runtime_failure_option() -> None:
    result = CliRunner().invoke(_cli(), ["--runtime-failure", "PipelineError"])
    assert result.exit_code != 0
    assert "NAME=PROBABILITY" in result.output


def test_cli_builds_config_and_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: dict[str, object] = {}

    def fake_serve(config: EmulatorConfig, host: str, port: int) -> None:
        captured.update(config=config, host=host, port=port)

    monkeypatch.setattr("fashn_prefect.emulator.server.serve", fake_serve)
    result = CliRunner().invoke(
        _cli(),
        [
            "--port",
            "9999",
            "--api-key",
            "fa-a",
            "--api-key",
            "fa-b",
            "--time-scale",
            "0.5",
            "--seed",
            "3",
            "--credits",
            "42",
            "--runtime-failure",
            "PipelineError=0.25",
            "--run-5xx",
            "0.1",
            "--rate-limit-burst",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    config = captured["config"]
    assert isinstance(config, EmulatorConfig)
    assert config.api_keys == ("fa-a", "fa-b") and config.time_scale == 0.5 and config.seed == 3
    assert config.on_demand_credits == 42
    assert config.faults.runtime_failures == {"PipelineError": 0.25}
    assert config.faults.run_5xx == 0.1 and config.faults.rate_limit_burst == 2
    assert captured["port"] == 9999
    assert "fa-a" not in result.output
