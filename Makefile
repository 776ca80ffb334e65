# Quickstart: `make demo`, `make test`. Needs only Python 3.11 to 3.14 and make.
# Another Python: `make PYTHON=python3.13 demo` (each Python gets its own virtualenv).
PYTHON ?= python3
PYVER  := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
VENV   ?= .venv-$(or $(PYVER),none)
PY     := $(VENV)/bin/python

.PHONY: test quick-test lint demo install clean

$(VENV)/.installed: pyproject.toml setup.cfg
	@test -n "$(PYVER)" || { echo "$(PYTHON) not found: payverify needs Python 3.11 to 3.14" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 14) else "payverify needs Python 3.11 to 3.14, $(PYTHON) is " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

install: $(VENV)/.installed

# Everything: the checks below, then all three tiers of the suite (tests/unit, integration, reliability).
# On as many workers as the machine has cores (pytest-xdist): each worker has its own databases.
test: lint
	$(PY) -m pytest --numprocesses=auto --dist=loadgroup $(PYTEST_ARGS)

# The unit tier alone: pure functions and the commands in process; no server, no subprocess; seconds.
quick-test: $(VENV)/.installed
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The linter, the type checker and the layer contracts (pyproject.toml configures all three).
lint: $(VENV)/.installed
	$(PY) -m ruff check payverify payverify_dev tests benchmarks
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

demo: $(VENV)/.installed
	$(PY) -m payverify_dev.demo

clean:
	rm -rf .venv-* $(VENV) demo-output build *.egg-info
