# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-gpu visdom serve clean-venv

install: $(STAMP)

# The venv is (re)built only when the dependency files change: second runs do not reinstall.
# setuptools<81 is resolved together with the requirements (torch pulls a newer one otherwise),
# because visdom 0.2.4 needs pkg_resources and builds only with --no-build-isolation.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q 'setuptools<81' wheel -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-build-isolation 'visdom==0.2.4'
	$(PY) -m pip install --disable-pip-version-check -q --no-build-isolation --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m common.demo

test: $(STAMP)
	$(PY) -m pytest -q

test-gpu: $(STAMP)
	$(PY) -m pytest -q -m cuda

visdom: $(STAMP)
	$(PY) fhn/scripts/visdom_server.py

# FHN outfit recommender on the demo catalogue (waitress); PORT=8080 make serve
PORT ?= 5000
serve: $(STAMP)
	$(PY) fhn/web/backend.py --demo --port $(PORT)

clean-venv:
	rm -rf $(VENV)
