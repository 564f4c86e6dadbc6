"""``fashn-prefect emulator``: run the FASHN API emulator in the foreground.

``emulator_command`` is a plain typer command function; the main CLI mounts it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .config import DEFAULT_API_KEY, EmulatorConfig, FaultConfig


def _runtime_failures(values: list[str]) -> dict[str, float]:
    result: dict[str, float] = {}
    for value in values:
        name, sep, probability = value.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            result[name] = float(probability)
        except ValueError:
            raise typer.BadParameter(
                f"expected NAME=PROBABILITY, got {value!r}", param_hint="--runtime-failure"
            ) from None
    return result


def emulator_command(
    host: Annotated[
        str, typer.Option(help="Interface to bind (loopback unless --allow-remote).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    api_key: Annotated[
        list[str] | None,
        typer.Option("--api-key", help="Accepted API key (repeatable). Default: the emulator key."),
    ] = None,
    time_scale: Annotated[
        float, typer.Option(help="Real seconds per emulated second (0.01 = 100x faster).")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for latencies and fault decisions.")] = 0,
    latency_multiplier: Annotated[
        float,
        typer.Option(help="Processing takes this many times the documented latency (default 1)."),
    ] = 1.0,
    credits: Annotated[int, typer.Option(help="Starting on-demand credit balance.")] = 1_000_000,
    subscription_credits: Annotated[int, typer.Option(help="Starting subscription credits.")] = 0,
    max_in_flight: Annotated[
        int, typer.Option(help="Concurrent predictions per key (per account: see below).")
    ] = 6,
    validation: Annotated[
        str, typer.Option(help="'sync' (400 at /v1/run) or 'runtime' (failed prediction).")
    ] = "sync",
    run_5xx: Annotated[float, typer.Option(help="Probability /v1/run answers 500.")] = 0.0,
    status_5xx: Annotated[float, typer.Option(help="Probability /v1/status answers 500.")] = 0.0,
    drop_connection: Annotated[
        float, typer.Option(help="Probability a run/status connection is dropped.")
    ] = 0.0,
    slow_response: Annotated[float, typer.Option(help="Probability a response is delayed.")] = 0.0,
    slow_seconds: Annotated[float, typer.Option(help="Delay of slow responses (real s).")] = 5.0,
    runtime_failure: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=PROBABILITY runtime failure, e.g. PipelineError=0.03 (repeatable)."
        ),
    ] = None,
    failure_marker: Annotated[
        str, typer.Option(help="Marker that forces a runtime error.")
    ] = "emulator-fail:",
    rate_limit_burst: Annotated[int, typer.Option(help="Next N requests get 429.")] = 0,
    cdn_gone: Annotated[float, typer.Option(help="Probability an output URL is gone.")] = 0.0,
    dict_outputs: Annotated[
        bool, typer.Option(help='Variant: output as {"images": [...]} instead of a list.')
    ] = False,
    drop_outputs: Annotated[
        int, typer.Option(help="Variant: completed predictions list N fewer outputs (charged).")
    ] = 0,
    omit_retry_after: Annotated[
        bool, typer.Option(help="Variant: 429 RateLimitExceeded without Retry-After.")
    ] = False,
    zero_retry_after: Annotated[
        bool, typer.Option(help="Variant: 429 RateLimitExceeded with Retry-After: 0.")
    ] = False,
    omit_credits_header: Annotated[
        bool, typer.Option(help="Variant: terminal status without x-fashn-credits-used.")
    ] = False,
    forget_after: Annotated[
        float,
        typer.Option(help="Variant: status answers 404 N emulated s after a prediction ends."),
    ] = 0.0,
    canceled: Annotated[
        float, typer.Option(help="Variant: probability a prediction ends 'canceled'.")
    ] = 0.0,
    time_out: Annotated[
        float, typer.Option(help="Variant: probability a prediction ends 'time_out'.")
    ] = 0.0,
    octet_stream_cdn: Annotated[
        bool, typer.Option(help="Variant: CDN serves outputs as application/octet-stream.")
    ] = False,
    account_concurrency: Annotated[
        bool, typer.Option(help="Variant: the in-flight limit counts all keys together.")
    ] = False,
    accept_unknown_models: Annotated[
        bool, typer.Option(help="Variant: run model names the specs do not describe.")
    ] = False,
    webhook_drop: Annotated[
        float, typer.Option(help="Probability a prediction's webhook is never sent.")
    ] = 0.0,
    webhook_duplicate: Annotated[
        float, typer.Option(help="Probability a prediction's webhook is delivered twice.")
    ] = 0.0,
    webhook_delay: Annotated[
        float, typer.Option(help="Emulated seconds before a webhook's first attempt.")
    ] = 0.0,
    webhook_fail_attempts: Annotated[
        int, typer.Option(help="The first N attempts of every webhook fail (retried).")
    ] = 0,
    allow_remote: Annotated[
        bool, typer.Option(help="Allow binding a non-loopback interface.")
    ] = False,
) -> None:
    """Run the FASHN API emulator (a local stand-in for https://api.fashn.ai).

    By default every answer has the documented form. The "Variant:" options (all off by
    default) make it answer the way the real API may instead; the README's emulator
    section describes each one.
    """
    from .inputs import is_loopback_host
    from .server import serve

    if not allow_remote and not is_loopback_host(host):
        raise typer.BadParameter(
            "refusing to bind a non-loopback host without --allow-remote", param_hint="--host"
        )
    if validation not in ("sync", "runtime"):
        raise typer.BadParameter("must be 'sync' or 'runtime'", param_hint="--validation")
    faults = FaultConfig(
        run_5xx=run_5xx,
        status_5xx=status_5xx,
        drop_connection=drop_connection,
        slow_response=slow_response,
        slow_seconds=slow_seconds,
        runtime_failures=_runtime_failures(runtime_failure or []),
        failure_marker=failure_marker,
        rate_limit_burst=rate_limit_burst,
        cdn_gone=cdn_gone,
        dict_outputs=dict_outputs,
        drop_outputs=drop_outputs,
        omit_retry_after=omit_retry_after,
        zero_retry_after=zero_retry_after,
        omit_credits_header=omit_credits_header,
        forget_after=forget_after,
        canceled=canceled,
        time_out=time_out,
        octet_stream_cdn=octet_stream_cdn,
        account_concurrency=account_concurrency,
        accept_unknown_models=accept_unknown_models,
        webhook_drop=webhook_drop,
        webhook_duplicate=webhook_duplicate,
        webhook_delay=webhook_delay,
        webhook_fail_attempts=webhook_fail_attempts,
    )
    keys = tuple(api_key) if api_key else (DEFAULT_API_KEY,)
    config = EmulatorConfig(
        api_keys=keys,
        subscription_credits=subscription_credits,
        on_demand_credits=credits,
        time_scale=time_scale,
        latency_multiplier=latency_multiplier,
        seed=seed,
        max_in_flight=max_in_flight,
        validation="runtime" if validation == "runtime" else "sync",
        faults=faults,
    )
    shown = "[::1]" if host == "::1" else host
    typer.echo(f"FASHN emulator on http://{shown}:{port} (time scale {time_scale})")
    if not api_key:
        typer.echo(f"API key: {DEFAULT_API_KEY}")
    else:
        typer.echo(f"{len(keys)} API key(s) configured")
    serve(config, host=host, port=port)
