# `make run` and `make test` both set up .venv from the pinned requirements first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARED_DIR ?= $(abspath $(CURDIR)/../shared)
PORT ?= 8501
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

.PHONY: setup run test test-fast api bench browser clean

setup: $(VENV)/.installed $(KERAS_HOME_STAMP)

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/keras_home/.copied:
	mkdir -p $(VENV)/keras_home
	cp -r $(SHARED_DIR)/keras_home/. $(VENV)/keras_home/
	chmod -R u+w $(VENV)/keras_home
	touch $@

run: setup
	$(PY) -m imgrec init
	$(PY) -m streamlit run streamlit_app.py --server.port $(PORT)

api: setup
	$(PY) -m imgrec init
	$(PY) -m imgrec serve --port $(API_PORT)

browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: setup browser
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser"

bench: setup
	for script in bench/*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
