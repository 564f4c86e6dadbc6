"""A short mutation run: hand-picked mutants of the code that guards rows and credits.

Each mutant breaks one line of product code the way a plausible regression would
(one call too many per window, an ambiguous row resubmitted, a retry of a POST that may
have been charged...). The script applies it in place, runs only the tests that should
notice (with a timeout), restores the file whatever happens, and prints a table of
mutants killed or survived and the kill rate. It first checks that those tests pass on
the unmutated code, so a kill means the mutant was noticed.

Run it with ``make mutation`` (about 15 minutes on two busy cores), or one mutant with
``python tests/mutation/run_mutants.py limits-window-one-too-many``. It is not a
test module: pytest does not collect it.

Surviving mutants are listed in SURVIVORS with the reason they survive (an equivalent
change, or one no user could notice); any other survivor is a missing test.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 300.0


@dataclass(frozen=True)
class Mutant:
    """Replace ``original`` (which must occur exactly once in ``file``) by ``replacement``."""

    name: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]


RATES = "fashn_prefect/scheduler/rates.py"
PLAN = "fashn_prefect/run/plan.py"
LEDGER = "fashn_prefect/store/ledger.py"
SUBMIT = "fashn_prefect/run/submit.py"
ROWS = "fashn_prefect/run/rows.py"
CLIENT = "fashn_prefect/api/client.py"
LEASES = "fashn_prefect/scheduler/leases.py"
RUNTIME = "fashn_prefect/run/runtime.py"
TASKS = "fashn_prefect/tasks.py"
ACCOUNT = "fashn_prefect/scheduler/account.py"
OVERLAP = "fashn_prefect/jobs/overlap.py"
T_LIMITS = ("tests/scheduler/test_account.py",)
T_PLAN = ("tests/run/test_plan.py",)
T_SNAPSHOTS = ("tests/store/test_ledger_snapshots.py",)
T_CLIENT = ("tests/api/test_client_mock.py",)
T_EDGES = ("tests/scenarios/test_edges.py",)
T_RUN_RATE = (
    "tests/scenarios/test_limits.py::test_one_run_keeps_its_submissions_within_a_tight_run_limit",
)
T_STATUS_RATE = (
    "tests/scenarios/test_limits.py::test_one_run_keeps_its_status_calls_within_a_tight_status_limit",
)
T_BUSY = (
    "tests/scheduler/test_leases.py::test_a_busy_server_is_asked_again_until_it_grants_the_slot",
)
T_HANDOFF = (
    "tests/scheduler/test_leases.py::"
    "test_a_freed_slot_goes_to_the_next_prediction_here_until_another_process_waits",
)
T_ONE_ASKER = (
    "tests/scheduler/test_leases.py::test_blocked_takes_of_one_process_ask_the_server_one_at_a_time",
)
T_OVERLAP = ("tests/jobs/test_overlap.py",)
T_INTENT = (
    "tests/store/test_storage_timeouts.py::test_a_row_whose_intent_cannot_be_recorded_is_never_submitted",
)

MUTANTS = (
    # -- rates: how calls count against a window
    Mutant(
        "limits-window-one-too-many",
        RATES,
        "len(self.finished) + self.active < self.limit.requests",
        "len(self.finished) + self.active <= self.limit.requests",
        T_LIMITS,
    ),
    Mutant(
        "limits-window-forgets-running-calls",
        RATES,
        "len(self.finished) + self.active < self.limit.requests",
        "len(self.finished) < self.limit.requests",
        T_LIMITS,
    ),
    Mutant(
        "limits-window-expires-at-the-boundary",
        RATES,
        "now - self.finished[0] >= self.limit.seconds",
        "now - self.finished[0] > self.limit.seconds",
        T_LIMITS,
    ),
    Mutant(
        "limits-window-counts-from-the-start",
        RATES,
        "        self.active -= 1\n        self.finished.append(now)",
        "        self.active -= 1\n        self.finished.append(now - 1.0)",
        T_LIMITS,
    ),
    # -- plan and ledger: what a re-run does with each row
    Mutant(
        "plan-resubmits-ambiguous",
        PLAN,
        'return "submit" if resubmit_ambiguous else "ambiguous"',
        'return "submit"',
        T_PLAN,
    ),
    Mutant(
        "plan-columns-resubmit-lost-answers",
        PLAN,
        'codes[lost] = _CODES.index("submit" if resubmit_ambiguous else "ambiguous")',
        'codes[lost] = _CODES.index("submit")',
        T_SNAPSHOTS,
    ),
    Mutant(
        "plan-columns-forget-predictions-to-resume",
        PLAN,
        'codes[resume] = _CODES.index("resume")',
        'codes[resume] = _CODES.index("submit")',
        T_SNAPSHOTS,
    ),
    Mutant(
        "plan-columns-recover-changed-inputs",
        PLAN,
        'codes[~same] = _CODES.index("submit")',
        "pass",
        T_SNAPSHOTS,
    ),
    Mutant(
        "validate-columns-clear-out-of-range-integers",
        "fashn_prefect/run/columnar.py",
        "        ok = pc.and_(ok, pc.less_equal(numbers, f.maximum))",
        "        pass",
        ("tests/run/test_columnar.py",),
    ),
    Mutant(
        "validate-columns-hash-without-model",
        "fashn_prefect/run/columnar.py",
        "f'\"model_name\":{json.dumps(name)}'",
        '\'"model_name":""\'',
        ("tests/run/test_columnar.py",),
    ),
    Mutant(
        "plan-resubmits-permanent-failures",
        PLAN,
        "and record.last_error_name in PERMANENT_ERRORS\n        and not retry_failed",
        "and record.last_error_name in PERMANENT_ERRORS\n        and retry_failed",
        T_PLAN,
    ),
    Mutant(
        "plan-forgets-terminal-predictions",
        PLAN,
        'record.last_status in ("submitted", "completed") and record.last_prediction_id',
        'record.last_status == "submitted" and record.last_prediction_id',
        T_PLAN,
    ),
    Mutant(
        "plan-never-skips",
        PLAN,
        "    pending = np.flatnonzero(done_index < 0)\n",
        "    pending = np.arange(len(keys))\n",
        T_PLAN,
    ),
    Mutant(
        "plan-resubmits-unreadable-records",
        PLAN,
        'return ("submit" if resubmit_ambiguous else "ambiguous"), False',
        'return "submit", False',
        T_PLAN,
    ),
    Mutant(
        "ledger-skips-damaged-records",
        "fashn_prefect/store/records.py",
        '        return UnreadableRecord(key, shown, f"{type(exc).__name__}: {exc}")\n    return',
        "        return None\n    return",
        T_PLAN,
    ),
    Mutant(
        "ledger-snapshot-overrides-a-newer-loose-record",
        PLAN,
        "        if key in found.own:\n",
        "        if False:\n",
        T_SNAPSHOTS,
    ),
    Mutant(
        "ledger-merge-deletes-snapshots-it-did-not-read",
        LEDGER,
        "        _remove(self.fs, paths)  # a snapshot another run merged too is gone already",
        "        _remove(self.fs, self._snapshot_paths())",
        T_SNAPSHOTS,
    ),
    Mutant(
        "runtime-deletes-loose-records-whose-last-write-failed",
        RUNTIME,
        "stored = [r.row_key for r in batch if self._landed.get(r.row_key) == r.to_json()]",
        "stored = [r.row_key for r in batch]",
        T_SNAPSHOTS,
    ),
    # -- submit and predict: a submission is recorded before it is sent, never sent twice
    Mutant(
        "submit-sends-without-recorded-intent",
        SUBMIT,
        "            try:\n                await rt.save(record)\n            except BaseException:",
        "            try:\n                pass\n            except BaseException:",
        T_INTENT,
    ),
    Mutant(
        "submit-skips-the-run-limiter",
        SUBMIT,
        "async with rt.account.run_call():",
        "async with asyncio.timeout(None):",
        T_RUN_RATE,
    ),
    Mutant(
        "submit-ambiguous-recorded-as-failure",
        SUBMIT,
        'attempt.status = record.status = "ambiguous"',
        'attempt.status = record.status = "failed"',
        (*T_EDGES, "tests/scenarios/test_ambiguous.py"),
    ),
    Mutant(
        "poll-skips-the-status-limiter",
        "fashn_prefect/run/poll.py",
        "    async with rt.account.status_call():\n        status = await",
        "    async with asyncio.timeout(None):\n        status = await",
        T_STATUS_RATE,
    ),
    Mutant(
        "polls-spread-evenly-through-the-range",
        "fashn_prefect/scheduler/polls.py",
        "target = last + min(max(step, body_step / 2), body_step)",
        "target = last + body_step / 2",
        ("tests/scenarios/test_latency.py", "tests/scheduler/test_polls.py"),
    ),
    Mutant(
        "predict-notfound-is-a-plain-failure",
        ROWS,
        'attempt.status = record.status = "ambiguous"\n            attempt.error_name, attempt.error_message = "NotFound"',
        'attempt.status = record.status = "failed"\n            attempt.error_name, attempt.error_message = "NotFound"',
        T_EDGES,
    ),
    Mutant(
        "plan-starts-new-submissions-before-resumed-predictions",
        PLAN,
        'rank = {"resume": 1, "submit": 2}',
        'rank = {"resume": 2, "submit": 2}',
        T_PLAN,
    ),
    Mutant(
        "plan-starts-the-shortest-jobs-first",
        PLAN,
        "latency = -expected_seconds(plan.spec(index)) if position == 2 else 0.0",
        "latency = expected_seconds(plan.spec(index)) if position == 2 else 0.0",
        T_PLAN,
    ),
    Mutant(
        "task-retries-ambiguous-submissions",
        ROWS,
        "    if isinstance(exc, AmbiguousSubmission | OutputUnavailable):\n        return False",
        "    if isinstance(exc, AmbiguousSubmission | OutputUnavailable):\n        return True",
        T_EDGES,
    ),
    Mutant(
        "predict-resubmits-after-polling-timeout",
        ROWS,
        'known = last.prediction_id if last and last.status in ("submitted", "completed") else None',
        "known = None",
        T_EDGES,
    ),
    # -- one engine: the composable tasks get the flows' guarantees
    Mutant(
        "tasks-forget-the-learned-latency",
        RUNTIME,
        "self.polls: PollScheduler = poll_scheduler(account)",
        "self.polls: PollScheduler = PollScheduler()",
        (
            "tests/scenarios/test_latency.py::test_tasks_mapped_in_a_users_flow_poll_like_the_manifest_flow",
        ),
    ),
    Mutant(
        "tasks-ignore-the-storage-block",
        TASKS,
        "open_runtime(creds, s, output, s.resolved_storage_options())",
        "open_runtime(creds, s, output, s.storage_options)",
        ("tests/store/test_storage_blocks.py",),
    ),
    # -- client: which failures are retried
    Mutant(
        "client-retries-post-after-sending",
        CLIENT,
        'if op == "run" and not isinstance(exc, _NOT_SENT_RETRYABLE):',
        'if op == "run" and False:',
        T_CLIENT,
    ),
    Mutant(
        "client-retries-undocumented-5xx-post",
        CLIENT,
        "if not documented and response.status_code >= 500:",
        "if not documented and response.status_code >= 600:",
        T_CLIENT,
    ),
    Mutant(
        "client-retries-undocumented-429-post",
        CLIENT,
        "if not (documented and error.name in _RETRYABLE_RUN_ERRORS and error.retryable):",
        "if not (error.retryable):",
        T_CLIENT,
    ),
    Mutant(
        "client-connect-error-is-ambiguous",
        CLIENT,
        "    httpx.ConnectError,\n    httpx.ConnectTimeout,",
        "    httpx.ConnectTimeout,",
        T_CLIENT,
    ),
    Mutant(
        "client-one-retry-too-many",
        CLIENT,
        "                    if attempt >= self.max_retries:\n                        raise error",
        "                    if attempt > self.max_retries:\n                        raise error",
        T_CLIENT,
    ),
    Mutant(
        "client-retries-permanent-status-errors",
        CLIENT,
        "        elif not error.retryable:\n            raise error",
        "        elif False:\n            raise error",
        T_CLIENT,
    ),
    # -- shared limits: slots held on the Prefect server
    Mutant(
        "server-busy-answer-fails-the-take",
        LEASES,
        "            if exc.response.status_code not in BUSY_STATUS or time.monotonic() > deadline:",
        "            if True:",
        T_BUSY,
    ),
    Mutant(
        "account-freed-slot-always-goes-to-the-server",
        ACCOUNT,
        "            if held.handoffs < HANDOFFS or not self.server.others_waiting:",
        "            if False:",
        T_HANDOFF,
    ),
    Mutant(
        "account-freed-slot-never-leaves-while-others-wait",
        ACCOUNT,
        "            if held.handoffs < HANDOFFS or not self.server.others_waiting:",
        "            if True:",
        T_HANDOFF,
    ),
    Mutant(
        "server-every-blocked-take-asks",
        LEASES,
        "            async with self._asking:",
        "            async with contextlib.nullcontext():",
        T_ONE_ASKER,
    ),
    # -- backfill chunks, two at once
    Mutant(
        "backfill-chunks-one-after-another",
        OVERLAP,
        "            await settle(until_fewer_than=at_once)",
        "            await settle(until_fewer_than=1)",
        T_OVERLAP,
    ),
    Mutant(
        "backfill-abandons-running-chunks-on-a-crash",
        OVERLAP,
        "    finally:\n        await settle(until_fewer_than=1)",
        "    finally:\n        pass",
        T_OVERLAP,
    ),
)

# Mutants that survive, and why no test should kill them.
SURVIVORS = {
    "limits-window-expires-at-the-boundary": (
        "Equivalent in effect: a call that would start exactly one window after the oldest "
        "finished call starts 1 ms later (the limiter's minimum wait) instead; it can only "
        "make the limiter more cautious, never let a call too many through."
    ),
}


@contextmanager
def applied(mutant: Mutant) -> Iterator[None]:
    """The mutant in place for the duration of the block; the file is always restored."""
    path = ROOT / mutant.file
    original = path.read_bytes()
    text = original.decode()
    count = text.count(mutant.original)
    if count != 1:
        raise SystemExit(f"{mutant.name}: the original snippet occurs {count} times in {path}")
    try:
        path.write_text(text.replace(mutant.original, mutant.replacement))
        yield
    finally:
        path.write_bytes(original)


def run_tests(tests: tuple[str, ...]) -> tuple[str, float]:
    """``passed``, ``failed`` or ``timeout`` for the tests, and the seconds they took."""
    started = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - started
    return ("passed" if done.returncode == 0 else "failed"), time.monotonic() - started


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through applied(), which restores the file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="run only these mutants")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    mutants = [m for m in MUTANTS if not args.names or m.name in args.names]
    if not mutants:
        parser.error(f"no such mutant; known: {', '.join(m.name for m in MUTANTS)}")

    for selection in dict.fromkeys(m.tests for m in mutants):
        outcome, _ = run_tests(selection)
        if outcome != "passed":
            print(f"baseline {outcome}: {' '.join(selection)}; fix the tests first")
            return 2

    rows = []
    for mutant in mutants:
        with applied(mutant):
            outcome, seconds = run_tests(mutant.tests)
        verdict = "SURVIVED" if outcome == "passed" else "killed"
        rows.append((mutant, verdict, outcome, seconds))
        print(f"{mutant.name:45} {rows[-1][1]:9} ({outcome}, {seconds:.0f} s)", flush=True)

    kills = sum(1 for _, verdict, _, _ in rows if verdict == "killed")
    print()
    print("| mutant | file | killed by | result |")
    print("|---|---|---|---|")
    for mutant, verdict, outcome, _ in rows:
        names = ", ".join(t.rsplit("/", 1)[-1].split("::")[0] for t in mutant.tests)
        print(f"| {mutant.name} | {mutant.file} | {names} | {verdict} ({outcome}) |")
    print()
    print(f"Kill rate: {kills}/{len(rows)} = {100 * kills / len(rows):.0f} %")
    unexplained = [m.name for m, v, _, _ in rows if v == "SURVIVED" and m.name not in SURVIVORS]
    for mutant, verdict, _, _ in rows:
        if verdict == "SURVIVED" and mutant.name in SURVIVORS:
            print(f"Survivor {mutant.name}: {SURVIVORS[mutant.name]}")
    if unexplained:
        print(f"Unexplained survivors (missing tests): {', '.join(unexplained)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
