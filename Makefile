# Quick start: `make run` (demo image) and `make test` (whole suite). See README.md.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest
export CONTAINERS_CONF ?= $(CURDIR)/tests/containers.conf

.PHONY: setup system-deps run test test-fast fuzz lint typecheck bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# System tools the tests drive for real (podman+runc, skopeo, umoci, registry, apt, gpgv).
system-deps:
	@sh .ci/system-deps

# The demo: a distroless Python image, built without a daemon, then looked at.
DEMO := out/python3-nonroot.oci.tar
run: setup
	$(BIN)/distill lock python3:nonroot -o out/python3-nonroot.lock
	$(BIN)/distill build python3:nonroot --lock out/python3-nonroot.lock -o oci-archive:$(DEMO)
	$(BIN)/distill inspect oci-archive:$(DEMO)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

# Offline and quick: no network, no containers, and neither the hostile corpus (a few hundred
# real runs of distill on crafted inputs) nor the fuzz targets: `make test` runs those.
test-fast: setup
	$(PYTEST) -q -n 2 -m "not network and not container" -p no:cacheprovider \
		--ignore=tests/hostile --ignore=tests/fuzz

# Everything, slow tests included. pytest exits 5 when it collected nothing: that fails too.
test: setup system-deps lint typecheck
	$(PYTEST) -q -n 2 --dist loadfile -p no:cacheprovider --durations=25

# Hypothesis on every parser of untrusted input (tests/fuzz): FUZZ_EXAMPLES per target.
# `make test` runs the same targets with 300 examples each.
FUZZ_EXAMPLES ?= 10000
fuzz: setup
	DISTILL_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PYTEST) -q -p no:cacheprovider --hypothesis-show-statistics --durations=0 tests/fuzz

bench: setup
	$(BIN)/python benchmarks/bench_index.py
	$(BIN)/python benchmarks/bench_build.py
	$(BIN)/python benchmarks/bench_analyze.py

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
