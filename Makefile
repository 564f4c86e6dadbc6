# fashn-prefect developer commands. Every target sets up .venv itself on a fresh machine
# (Python 3.11 + pip is all it needs) from the pinned constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint typecheck unit test mutation demo emulator bench reliability lock clean

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

# The inner loop: the tests that start no server and sleep for nothing (marked `unit`;
# tests/conftest.py fails one that tries). About 10 s.
unit: install
	$(BIN)/python -m pytest -q -m unit

# Every test but the reliability suite's slow scenarios, on TEST_WORKERS pytest-xdist
# workers: the suite mostly waits on servers, so 4 workers keep 2 cores busy. A test file
# runs on one worker (--dist loadfile), which starts its own Prefect test server; the
# slowest files go first (tests/conftest.py, SLOWEST_FILES).
TEST_WORKERS ?= 4
test: lint typecheck
	$(BIN)/python -m pytest -q -m "not reliability" -n $(TEST_WORKERS) --dist loadfile

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

# Benchmarks: each prints its Markdown tables and writes them into its page's data,
# docs/performance/<name>.md (the "latest run" section, with the command and commit), which
# the docs site's performance page includes. Compare with earlier code with --baseline REV
# (benchmarks/latency.py, benchmarks/shared_limits.py).
bench: install
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/planning.py
	$(BIN)/python benchmarks/launch_order.py
	$(BIN)/python benchmarks/shared_limits.py
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/raised_limits.py
	$(BIN)/python benchmarks/webhooks.py

emulator: install
	$(BIN)/fashn-prefect emulator --port 8765

# Regenerate the pinned set after changing dependencies in pyproject.toml.
lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

# The documentation site (mkdocs + Material + mkdocstrings) into site/, warnings as errors;
# the reference tables are generated from the code (docs/gen_reference.py). Also checks
# that the README's relative links resolve.
DOCS_STAMP := $(VENV)/.installed-docs
.PHONY: docs

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,s3,docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/python docs/check_links.py README.md CONTRIBUTING.md
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache demo-output
