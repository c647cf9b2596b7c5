# The two commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-all test-docs benchmark train-benchmark parity flops mutation clean

$(STAMP): setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m prtr_tf.demo

PYTEST := TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -q

# The CI tier: every test but those marked `extended` (docs/testing.md).
test: $(STAMP)
	$(PYTEST) -m "not extended" $(PYTEST_ARGS) tests

# Every test: the CI tier, the extended tests and every docs page's commands.
test-all: $(STAMP)
	PRTR_DOCS_ALL=1 $(PYTEST) $(PYTEST_ARGS) tests

# Every shell block of README.md and docs/*.md run on tiny data (make test runs the
# README's; tests/test_docs_commands.py). Minutes per page.
test-docs: $(STAMP)
	PRTR_DOCS_ALL=1 TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest -n 2 -q $(PYTEST_ARGS) tests/test_docs_commands.py

# Developer tools (tools/, not installed; docs/benchmarks.md and docs/checkpoints.md).
benchmark: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m tools.benchmark $(ARGS)

train-benchmark: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m tools.train_benchmark $(ARGS)

parity: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m tools.parity ../shared/golden/*.json $(ARGS)

flops: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m tools.flops --all $(ARGS)

# Mutation testing of the fast modules (docs/mutation.md; mutmut is not a dependency).
mutation: $(STAMP)
	$(BIN)/python -m pip install --quiet 'mutmut>=3.8,<4'
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m tools.mutation_hand
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m tools.mutation $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
