# hvbench: two commands. `make run` sets up and runs the default comparison;
# `make test` sets up and runs the tests, the nested KVM and Xen labs included
# (`make test-fast` skips the slow ones; `make test-xen` runs only the Xen lab's,
# its HVM guest included).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-xen lint deps test-deps setup clean

# exit code 1 means the run finished with some failed trials (listed in its report)
run: setup
	$(BIN)/hvbench run --suite quick --budget 12m --hypervisors || [ $$? -eq 1 ]
	@echo "report: $(BIN)/hvbench report latest   (raw data: $(BIN)/hvbench export latest --json)"

# Everything, the labs' HVM guests, tiles and I/O paths included (they once stood
# outside for time: nested boots got 3-4x faster with a compressed initramfs).
test: setup test-deps
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/pytest -q -rfER --durations=40

test-fast: setup test-deps
	$(BIN)/pytest -q -m "not slow"

test-xen: setup test-deps
	$(BIN)/pytest -q -rfER -m xenlab

test-labs-extra: setup test-deps
	$(BIN)/pytest -q -rfER -m labextra

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy

deps:
	./scripts/system-deps.sh packages/debian.txt

test-deps:
	./scripts/system-deps.sh packages/debian.txt packages/debian-test.txt

setup: deps $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,libvirt]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
