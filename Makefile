# The README's two commands: `make demo` and `make test`. Each sets up .venv on a fresh machine by itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel on this platform's disk (GPU users bring their own CUDA build).
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev,quant,metrics]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/flashdistill demo

test: $(STAMP)
	$(BIN)/ruff check flashdistill tests
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15

lint: $(STAMP)
	$(BIN)/ruff check flashdistill tests

clean:
	rm -rf $(VENV) runs
