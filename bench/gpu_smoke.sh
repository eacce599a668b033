#!/usr/bin/env bash
# GPU smoke check: every GPU path of ttstrain, small, offline, on one CUDA machine (docs/gpu.md).
#   bash bench/gpu_smoke.sh              # run it (needs CUDA; vLLM for the vLLM steps: pip install -e '.[vllm]')
#   bash bench/gpu_smoke.sh --dry_run    # print the commands only (what tests/test_gpu_smoke.py checks on CPU)
# Each step prints its wall time; the last line says how many steps passed. Outputs go to $OUT
# (default runs/gpu_smoke). The model is the shipped default world policy, so no hub is needed;
# set MODEL=<hub id or folder> (e.g. Qwen/Qwen2.5-Math-1.5B-Instruct) and PROBLEMS=gsm8k to try a real one.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0; [[ "${1:-}" == "--dry_run" ]] && DRY=1
OUT=${OUT:-runs/gpu_smoke}
MODEL=${MODEL:-default}
PROBLEMS=${PROBLEMS:-arith}
TT=${TT:-.venv/bin/ttstrain}
ACC=${ACC:-.venv/bin/accelerate}
passed=0; failed=0

step() {  # step NAME COMMAND...
  local name=$1; shift
  if [[ $DRY == 1 ]]; then echo "$*"; return; fi
  local t0=$SECONDS
  if "$@" > "$OUT/$name.log" 2>&1; then
    passed=$((passed + 1)); echo "ok   $name ($((SECONDS - t0)) s)"
  else
    failed=$((failed + 1)); echo "FAIL $name ($((SECONDS - t0)) s): see $OUT/$name.log"
  fi
}

if [[ $DRY == 0 ]]; then
  mkdir -p "$OUT"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no CUDA device"; exit 1; }
fi

step sample_vllm $TT sample --backend vllm --model_name_or_path $MODEL --problems $PROBLEMS --per_level 4 --limit 20 \
  --num_samples 8 --output_dir $OUT/samples
step label_mc_vllm $TT label-mc --backend vllm --model_name_or_path $MODEL --problems $PROBLEMS --per_level 2 \
  --limit 10 --num_samples 4 --num_rollouts 4 --output_dir $OUT/labels
step train_prm_single $ACC launch --config_file accelerate_configs/single_process.yaml recipes/train_prm.py \
  --config recipes/default/prm/config_demo.yaml --model_name_or_path $MODEL --dataset_path $OUT/labels \
  --output_dir $OUT/prm --num_train_epochs 1 --reference_features false --bf16 true
step train_prm_ddp $ACC launch --config_file accelerate_configs/multi_gpu_ddp.yaml --num_processes 1 recipes/train_prm.py \
  --config recipes/default/prm/config_demo.yaml --model_name_or_path $MODEL --dataset_path $OUT/labels \
  --output_dir $OUT/prm_ddp --num_train_epochs 1 --reference_features false
step train_prm_zero2 $ACC launch --config_file accelerate_configs/deepspeed_zero2.yaml --num_processes 1 recipes/train_prm.py \
  --config recipes/default/prm/config_demo.yaml --model_name_or_path $MODEL --dataset_path $OUT/labels \
  --output_dir $OUT/prm_zero2 --num_train_epochs 1 --reference_features false
step train_prm_lora $TT train-prm --config recipes/default/prm/config_demo.yaml --model_name_or_path $MODEL \
  --dataset_path $OUT/labels --output_dir $OUT/prm_lora --max_steps 4 --use_lora true --reference_features false
step eval_prm $TT eval-prm --prm_path $OUT/prm --labels $OUT/labels --samples $OUT/samples --output_dir $OUT/eval_prm
step search_vllm $TT search --backend vllm --model_name_or_path $MODEL --prm_path $OUT/prm --prm_device cuda \
  --problems $PROBLEMS --per_level 2 --limit 10 --max_budget 8 --methods majority best_of_n_weighted beam_search dvts \
  --output_dir $OUT/search

[[ $DRY == 0 ]] && echo "gpu smoke: $passed passed, $failed failed (logs in $OUT)"
[[ $DRY == 1 || $failed == 0 ]]
