# Fresh-machine entry points. `make demo` and `make test` create .venv on first use.
# `make demo` installs what the demo needs only; `make test` adds the test extras (reference packages,
# SimpleITK, the compiled dense-CRF package).
PYTHON ?= python3.11
VENV   := .venv
PIP    := $(VENV)/bin/pip
TORCH  ?= torch==2.13.0

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH)" -e .
	touch $@

$(VENV)/.installed: $(VENV)/.base
	$(PIP) install --quiet "$(TORCH)" -e ".[test,itk,crf]"
	touch $@

.PHONY: install demo test clean
install: $(VENV)/.installed

demo: $(VENV)/.base
	$(VENV)/bin/semiseg demo

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info
