# Fresh-machine entry points. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
PIP    := $(VENV)/bin/pip
TORCH  ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH)" -e ".[test,itk,crf]"
	touch $@

.PHONY: install demo test clean
install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/semiseg demo

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info
