# fashn-prefect developer commands. Every target sets up .venv itself on a fresh machine
# (Python 3.11 + pip is all it needs) from the pinned constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint typecheck test demo emulator bench reliability lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,s3]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check fashn_prefect flows tests
	$(BIN)/ruff format --check fashn_prefect flows tests

typecheck: install
	$(BIN)/mypy fashn_prefect flows

test: lint typecheck
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/fashn-prefect demo

emulator: install
	$(BIN)/fashn-prefect emulator --port 8765

# Regenerate the pinned set after changing dependencies in pyproject.toml.
lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache demo-output
