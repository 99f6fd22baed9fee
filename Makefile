# metarl: two commands from a fresh clone.
#   make demo   train a meta-learner on a small family and meta-test it on held-out tasks
#   make test   the test suite
# Both create .venv and install everything on first use (idempotent; skipped when up to date).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MPLBACKEND := Agg

.PHONY: install demo test bench lint format clean

install: $(STAMP)

# torch is installed first and pinned (constraints.txt): an unpinned torch pulls several GB of CUDA.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,metaworld,ray]"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

# pytest exits 5 when it collects no tests; that is a failure of the suite, reported as such.
test: $(STAMP)
	$(PY) -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

# The speed benchmarks (results, tables and provenance under benchmarks/). The learning benchmarks
# take hours on 2 cores: their commands are in each benchmarks/<name>/README.md.
bench: $(STAMP)
	$(PY) scripts/bench_core.py
	$(PY) scripts/bench_mujoco_overhead.py
	$(PY) scripts/bench_mujoco_speed.py
	$(PY) scripts/bench_samplers.py

# mypy type-checks the installed layout, where envs/ is metarl.envs and agents/ is metarl.agents. It
# cannot see the editable install's import hook, so it gets a throwaway link tree, build/typecheck/metarl/:
# links to every entry of metarl/ plus envs and agents, found first through MYPYPATH. The library's errors
# are reported under that tree: build/typecheck/metarl/envs/x.py is envs/x.py.
TYPECHECK := build/typecheck

lint: $(STAMP)
	$(VENV)/bin/ruff check metarl envs agents scripts tests
	$(VENV)/bin/ruff format --check metarl envs agents scripts tests
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/metarl
	for f in metarl/* envs agents; do ln -s "$(CURDIR)/$$f" $(TYPECHECK)/metarl/ || exit 1; done
	MYPYPATH=$(TYPECHECK) $(VENV)/bin/mypy $(TYPECHECK)/metarl scripts tests

format: $(STAMP)
	$(VENV)/bin/ruff format metarl envs agents scripts tests
	$(VENV)/bin/ruff check --fix metarl envs agents scripts tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
