# Every target creates .venv when it is missing and reinstalls the package when
# pyproject.toml changed since the last install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-fast test-slurm system-deps model bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## demo: label the bundled demo images with the bundled model; prints the report path
demo: $(STAMP)
	$(BIN)/vlm-micro demo --out results --cores $(CORES)

## system-deps: Debian packages the tests use (headless chromium, pdftoppm)
system-deps:
	@bash .ci/system-deps.sh

## test: the whole test suite
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -p no:cacheprovider tests

## test-fast: the suite without the tests marked slow
test-fast: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -m "not slow" tests

## test-slurm: start a single-node SLURM here, run the demo through the slurm profile, stop it
test-slurm: $(STAMP)
	bash .ci/slurm.sh

## model: retrain the bundled demo model from synthetic data (deterministic on CPU)
model: $(STAMP)
	$(BIN)/vlm-micro train-demo --out vlm_micro/models/demo

## bench: every benchmark; each prints name: value lines
bench: $(STAMP)
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

## lint: workflow lint and format check
lint: $(STAMP)
	$(BIN)/snakemake --lint --cores 1 --snakefile workflow/Snakefile --configfile tests/workflow/lint.yaml
	$(BIN)/snakefmt --check workflow

clean:
	rm -rf results demo_data .snakemake
