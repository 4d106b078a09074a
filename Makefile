# mae-nb: every target sets itself up from nothing (a project-local .venv, reused between runs).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mae-nb-installed
# `make run SMOKE=1` for the fast CI-sized run; `make run NB="03 04"` for some chapters only.
SMOKE  ?=
NB     ?=
OUT    ?= build
# `make run RECORD=1` also records each chapter's run time in docs/run_times.json and rewrites the
# run-time line of its header from it (the only way a run time gets into a notebook).
RECORD ?=

.PHONY: help install run test lab clean course-models learners book

help:
	@echo "make run    execute every notebook headless (papermill) -> $(OUT)/summary.md"
	@echo "make test   ruff, the import contract (lint-imports), then the test suite (every notebook in smoke mode)"
	@echo "make book   the course as a static website from the last make run -> $(OUT)/book/index.html"
	@echo "make lab    open JupyterLab at the first chapter"
	@echo "make learners  write the learner edition (solutions stubbed out) to notebooks/learners/"
	@echo "make clean  remove $(OUT)/ (executed run, site and screenshots; the .venv stays)"
	@echo "make course-models  retrain the course's open MAEs from mae_nb/weights/*.yaml (about an hour)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "mae-nb needs Python >= 3.10, found " + sys.version.split()[0]'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,docs]"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/mae-nb run $(NB) $(if $(SMOKE),--smoke) $(if $(RECORD),--record) --out $(OUT)

# The course as a website, rendered from the executed chapters of the last `make run` (executes
# nothing; fails with a message when there is no run, or a chapter is missing or failed).
book: $(STAMP)
	$(VENV)/bin/mae-nb build book --executed $(OUT)/executed --out $(OUT)/book

# conventions first (seconds), then the suite: the first failure stops with a non-zero exit
test: $(STAMP)
	$(VENV)/bin/ruff check
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/00_spatial_data_tour.ipynb

clean:
	rm -rf $(OUT)

# The learner edition: every chapter with its exercises' solutions replaced by stubs. It is
# committed (tests/test_editions.py keeps it in sync), so run this after changing a chapter.
learners: $(STAMP)
	$(VENV)/bin/mae-nb build learners --out notebooks/learners --overwrite

# The course's open MAEs: each trained by `mae-nb mae pretrain` from its config in mae_nb/weights/
# (one thread each, both at once: about an hour on 2 cores), then copied into the package with its
# training log and config. The registry (mae_nb/data/registry.py) records each file's sha256.
COURSE_MODELS := mae_tiny_course_rgb mae_tiny_course_6band

course-models: $(STAMP)
	$(MAKE) -j2 $(addprefix course-model-,$(COURSE_MODELS))

course-model-%: $(STAMP)
	$(VENV)/bin/mae-nb mae pretrain --config mae_nb/weights/$*.yaml --overwrite
	cp runs/course-models/$*/model.safetensors mae_nb/weights/$*.safetensors
	cp runs/course-models/$*/train_log.csv mae_nb/weights/$*_log.csv
	cp runs/course-models/$*/config.json mae_nb/weights/$*.json
	$(VENV)/bin/mae-nb mae evaluate --config mae_nb/weights/$*.yaml
	sha256sum mae_nb/weights/$*.safetensors
