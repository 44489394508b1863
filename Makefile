# Every target creates and uses its own virtualenv (.venv), so a fresh clone needs only python3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help venv run serve train eval score test soak bench clean node-clients

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed  ## create .venv with runtime + dev requirements

model/model.joblib: | $(BIN)/.installed
	$(BIN)/python train.py

train: $(BIN)/.installed  ## (re)train the shipped model on data/ (cross-validated report, writes model/)
	$(BIN)/python train.py

eval: model/model.joblib  ## evaluate model/ on ../shared/eval (when present)
	$(BIN)/python train.py --eval $(wildcard ../shared/eval/real_dev_labeled.csv ../shared/eval/seed_comments.csv)

score: model/model.joblib  ## score examples/comments.csv into examples/scored.csv
	$(BIN)/python score.py examples/comments.csv -o examples/scored.csv

run: serve  ## the product: train the model if needed, then serve it

serve: model/model.joblib  ## train if needed, then serve on $(HOST):$(PORT) with gunicorn
	MODCLF_BIND=$(HOST):$(PORT) $(BIN)/gunicorn -c gunicorn.conf.py "modclf.serving:create_app()"

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
