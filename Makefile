# Thin targets; each calls one or two commands. `make demo` and `make test` do all set-up themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
export RAY_DATA_DISABLE_PROGRESS_BARS=1 RAY_TRAIN_ENABLE_PRINT_PATCH=0 MLFLOW_DISABLE_TELEMETRY=true

.PHONY: install lock data demo test chaos test-unit lint bench schema clean

# Every dependency at the exact version of scripts/constraints.txt (a known-green environment).
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml scripts/constraints.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -c scripts/constraints.txt -e '.[dev]' && touch $@
	$(PY) -m compileall -q framework >/dev/null  # editable installs leave no bytecode cache

lock:
	bash scripts/lock.sh

data: install
	$(PY) scripts/make_data.py --out data

demo: install data
	bash scripts/demo.sh

test: install
	bash scripts/test.sh -m 'not chaos'

# Kills, stops and breaks real parts mid-run (docs/reliability.md); CI runs it after `make test`.
chaos: install
	bash scripts/test.sh -m chaos

test-unit: install
	$(PY) -m pytest tests/unit -q

lint: install
	$(VENV)/bin/lint-imports

bench: install data
	bash scripts/bench/run_all.sh

schema: install
	$(VENV)/bin/loom schema -o docs/recipe.schema.json

clean:
	rm -rf .loom data
