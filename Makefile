# `make run` and `make test` both set up .venv from the pinned requirements first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
SHARED_DIR ?= $(abspath $(CURDIR)/../shared)
PORT ?= 8501
APP_ADDRESS ?= 127.0.0.1
API_PORT ?= 8000

# Keras reads KERAS_HOME only if it can write there, else it tries to download:
# use a writable copy of the shared offline weights inside .venv.
ifneq ($(wildcard $(SHARED_DIR)/keras_home/models),)
export KERAS_HOME := $(CURDIR)/$(VENV)/keras_home
KERAS_HOME_STAMP := $(VENV)/keras_home/.copied
endif
ifneq ($(wildcard $(SHARED_DIR)/photos),)
export IMGREC_SAMPLES_DIR ?= $(SHARED_DIR)/photos
endif
ifneq ($(wildcard $(SHARED_DIR)/data),)
export IMGREC_SHARED_DATA_DIR ?= $(SHARED_DIR)/data
endif
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup setup-dev run test test-fast lint api bench browser deploy-tools clean

# Runtime pins, then the package itself (editable, so the `imgrec` command runs this checkout).
setup: $(VENV)/.installed $(KERAS_HOME_STAMP)

# The same plus the test and tooling pins.
setup-dev: setup $(VENV)/.installed-dev

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PIP) -r requirements-dev.txt
	touch $@

$(VENV)/keras_home/.copied:
	mkdir -p $(VENV)/keras_home
	cp -r $(SHARED_DIR)/keras_home/. $(VENV)/keras_home/
	chmod -R u+w $(VENV)/keras_home
	touch $@

run: setup
	$(PY) -m imgrec init
	$(PY) -m streamlit run streamlit_app.py --server.port $(PORT) --server.address $(APP_ADDRESS)

api: setup
	$(PY) -m imgrec init
	$(PY) -m imgrec serve --port $(API_PORT)

browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# Lint and the import-layering contract (layers, no cycles, no Streamlit in imgrec) fail the build.
lint: setup-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# What the deployment tests (tests/deploy/) need: Debian's docker.io (the engine is started here when it is not
# running), debootstrap (the local base image), prometheus (with promtool), and checkov in a venv of its own.
CHECKOV := $(VENV)/checkov/bin/checkov
deploy-tools: $(CHECKOV)
	@missing=""; for pair in dockerd:docker.io docker:docker.io debootstrap:debootstrap prometheus:prometheus promtool:prometheus; do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	@docker info >/dev/null 2>&1 || { echo "starting dockerd (log: $(VENV)/dockerd.log)"; \
		nohup dockerd >$(VENV)/dockerd.log 2>&1 & \
		for i in $$(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done; docker info >/dev/null; }

$(CHECKOV): deploy/requirements-checkov.txt
	test -x $(VENV)/checkov/bin/python || $(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet --disable-pip-version-check -r deploy/requirements-checkov.txt
	touch $@

test: lint browser deploy-tools
	$(PY) -m pytest -q --durations=30

test-fast: lint
	$(PY) -m pytest -q -m "not slow and not browser"

bench: setup
	for script in bench/*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
