# fashn-prefect developer commands. Every target sets up .venv itself on a fresh machine
# (Python 3.11 + pip is all it needs) from the pinned constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint typecheck test mutation demo emulator bench reliability lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,s3]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check fashn_prefect flows tests benchmarks examples
	$(BIN)/ruff format --check fashn_prefect flows tests benchmarks examples

typecheck: install
	$(BIN)/mypy fashn_prefect flows

test: lint typecheck
	$(BIN)/python -m pytest -q -m "not reliability"

# The reliability suite (tests/reliability): fault injection, SIGKILL + resume, S3 outages,
# hostile input, path safety, secrets, a 2,000-row endurance run. Prints a scenarios x
# invariants table; its fast property tests also run in `make test`.
reliability: install
	$(BIN)/python -m pytest -q tests/reliability

# A short mutation run (tests/mutation/run_mutants.py): hand-picked one-line regressions
# of limits, plan, ledger, submit, poll and the client's retry decisions, each run against
# the tests that should notice it. Prints a mutant x killed/survived table and the kill rate.
mutation: install
	$(BIN)/python tests/mutation/run_mutants.py

demo: install
	$(BIN)/fashn-prefect demo

# Benchmarks (each prints a Markdown table); all tables are also kept in
# benchmarks/results/latest.md (gitignored). About 18 minutes on 2 cores before shared_limits.py and latency.py were added (not yet timed whole).
bench: install
	@mkdir -p benchmarks/results
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/planning.py
	$(BIN)/python benchmarks/launch_order.py
	$(BIN)/python benchmarks/shared_limits.py
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/raised_limits.py
	$(BIN)/python benchmarks/webhooks.py
	cat benchmarks/results/throughput.md benchmarks/results/overhead.md \
		benchmarks/results/planning.md benchmarks/results/launch_order.md \
		benchmarks/results/shared_limits.md benchmarks/results/latency.md \
		benchmarks/results/raised_limits.md benchmarks/results/webhooks.md \
		> benchmarks/results/latest.md
	@echo "Tables saved to benchmarks/results/latest.md"

emulator: install
	$(BIN)/fashn-prefect emulator --port 8765

# Regenerate the pinned set after changing dependencies in pyproject.toml.
lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache demo-output
