# Every target creates and uses its own virtualenv (.venv), so a fresh clone needs only python3
# (and node/npm for the Akismet client tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
EVAL_FILES := $(wildcard ../shared/eval/real_dev_labeled.csv) data/validation.csv

.PHONY: help venv run serve train eval score test soak bench clean node-clients

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# Two stages: what the product needs to run (make serve), and on top of it the test and tool
# requirements (make test), so that a first `make serve` does not wait for the test tools.
$(BIN)/.runtime: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(BIN)/.installed: $(BIN)/.runtime requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed  ## create .venv with runtime + dev requirements and the modclf command

model/model.joblib: | $(BIN)/.runtime
	@echo "no model yet: training one on data/ without cross-validation (about a minute; 'make train' gives the full report)"
	$(BIN)/modclf train --folds 0

train: $(BIN)/.runtime  ## (re)train the shipped model on data/ with the cross-validated report (a few minutes)
	$(BIN)/modclf train

eval: $(BIN)/.runtime model/model.joblib  ## evaluate model/ on data/validation.csv and ../shared/eval/real_dev_labeled.csv (when present)
	@[ -f ../shared/eval/real_dev_labeled.csv ] || echo "note: ../shared/eval/real_dev_labeled.csv is not here (real comments are not shipped); evaluating on data/validation.csv only"
	$(BIN)/modclf eval $(EVAL_FILES) --png model/eval_confusion.png

score: $(BIN)/.runtime model/model.joblib  ## score examples/comments.csv into examples/scored.csv
	$(BIN)/modclf score examples/comments.csv -o examples/scored.csv

run: serve  ## the product: train the model if needed, then serve it

serve: $(BIN)/.runtime model/model.joblib  ## train if needed, then serve on $(HOST):$(PORT) with gunicorn
	$(BIN)/modclf serve --bind $(HOST):$(PORT)

node-clients:  ## install the npm Akismet clients that tests/test_akismet_node.py drives (node >= 20, npm)
	cd tests/node && npm ci --no-audit --no-fund --ignore-scripts

test: $(BIN)/.installed node-clients  ## run the test suite
	$(BIN)/python -m pytest -q

soak: $(BIN)/.installed  ## a minute of mixed traffic, slow clients and bad input against gunicorn (SOAK_SECONDS)
	$(BIN)/python -m pytest -q -s -m soak tests/test_soak.py

bench: model/model.joblib  ## run the benchmarks under bench/ (minutes; not part of the tests)
	$(BIN)/python bench/run_all.py

clean:  ## remove the virtualenv and caches (keeps model/)
	rm -rf $(VENV) .pytest_cache .hypothesis
