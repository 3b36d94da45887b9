# Exposure detector: the two commands of the quick start are `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install kafka-up kafka-down kafka-logs run simulate test test-unit test-integration system-deps bench clean lint schema deploy-check

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY) (Python >= 3.11)"; exit 1; }
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools
	@# setuptools notes every editable install with a BuildBackendWarning; it says nothing about this project
	PYTHONWARNINGS=ignore $(BIN)/pip install -q -e ".[test,dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv with the project (editable) and test tools

system-deps: ## Java/Maven for Kafka, Prometheus and Alertmanager for their tests (Debian)
	scripts/system-deps.sh all

kafka-up: $(STAMP) ## start a local single-node Apache Kafka (KRaft) on 127.0.0.1:9092
	scripts/system-deps.sh kafka
	scripts/kafka.sh up

kafka-down: ## stop it
	scripts/kafka.sh down

kafka-logs:
	scripts/kafka.sh logs 200

run: install kafka-up ## install, start Kafka, run the worker with config/expectations
	$(BIN)/python -m detector worker

simulate: ## produce the incident scenario into a running setup
	$(BIN)/python -m detector simulate incident

test: install ## every test; starts Kafka if needed and stops it again if it started it
	@scripts/system-deps.sh all
	@started=0; \
	if ! scripts/kafka.sh status >/dev/null 2>&1; then scripts/kafka.sh up && started=1; fi; \
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$started = 1 ]; then scripts/kafka.sh down; fi; \
	exit $$rc

lint: install ## ruff (pycodestyle, pyflakes, bugbear; line length 140) and mypy (strict for engine and alerts)
	$(BIN)/ruff check detector tests bench
	$(BIN)/mypy

schema: install ## regenerate config/expectation.schema.json from the registration model
	$(BIN)/python -m detector.registration.schema > config/expectation.schema.json

test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

deploy-check: install ## helm lint + template, schema-check the manifests, check docker-compose.yml
	scripts/deploy-check.sh

bench: install kafka-up
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python bench/throughput.py

clean:
	scripts/kafka.sh wipe || true
	rm -rf $(VENV) data .pytest_cache
