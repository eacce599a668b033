#!/usr/bin/env bash
# GPU smoke check: every GPU path of ttstrain, small, offline, on a CUDA machine, each step checked (docs/gpu.md).
#   bash bench/gpu_smoke.sh              # run it (needs CUDA, and vLLM: pip install -e '.[test,deepspeed,vllm]')
#   bash bench/gpu_smoke.sh --dry_run    # print the commands only (what tests/test_gpu_smoke.py checks on CPU)
# Each step prints ok/FAIL/skip, its wall time and the GPU's peak memory while it ran (nvidia-smi, sampled every
# 0.2 s: vLLM's engine process included); the last line counts passes. Outputs and logs go to $OUT (default
# runs/gpu_smoke). The model is the shipped default world policy, so no hub is needed; set MODEL=<hub id or
# folder> (e.g. Qwen/Qwen2.5-Math-1.5B-Instruct) and PROBLEMS=gsm8k to try a real one.
# Two-process DDP / ZeRO-2 / ZeRO-3 steps run when two GPUs are visible and are reported as skipped otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0; [[ "${1:-}" == "--dry_run" ]] && DRY=1
OUT=${OUT:-runs/gpu_smoke}
MODEL=${MODEL:-default}
PROBLEMS=${PROBLEMS:-arith}
PY=${PY:-.venv/bin/python}
TT=${TT:-.venv/bin/ttstrain}
ACC=${ACC:-.venv/bin/accelerate}
PRM_CFG=recipes/default/prm/config_pipeline.yaml
passed=0; failed=0; skipped=0
NGPU=2; [[ $DRY == 0 ]] && NGPU=$(nvidia-smi --list-gpus 2>/dev/null | wc -l)

step() {  # step NAME COMMAND...   (a command's log is $OUT/NAME.log)
  local name=$1; shift
  if [[ $DRY == 1 ]]; then printf "%q " "$@"; echo; return; fi
  local t0=$SECONDS peak_file="$OUT/$name.mem"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$peak_file" 2>/dev/null &
  local sampler=$!
  "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  kill $sampler 2>/dev/null; wait $sampler 2>/dev/null
  local peak; peak=$(sort -n "$peak_file" | tail -1)
  if [[ $rc == 0 ]]; then
    passed=$((passed + 1)); echo "ok   $name ($((SECONDS - t0)) s, peak ${peak:-?} MiB)"
  else
    failed=$((failed + 1)); echo "FAIL $name ($((SECONDS - t0)) s, peak ${peak:-?} MiB): see $OUT/$name.log"
  fi
}

skip() {  # skip NAME WHY
  if [[ $DRY == 1 ]]; then return; fi
  skipped=$((skipped + 1)); echo "skip $1 ($2)"
}

multi_gpu() {  # multi_gpu NAME COMMAND...: run with two GPUs, else say why not
  if (( NGPU >= 2 )); then step "$@"; else skip "$1" "$NGPU GPU visible; needs 2"; fi
}

if [[ $DRY == 0 ]]; then
  mkdir -p "$OUT"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no CUDA device"; exit 1; }
fi

# -- generation: vLLM against the transformers backend, then the generating stages on vLLM
step backends_agree $PY bench/backend_agreement.py --model $MODEL --problems $PROBLEMS --num_problems 16 \
  --output $OUT/backends_agree.json
step sample_vllm $TT sample --backend vllm --model_name_or_path $MODEL --problems $PROBLEMS --per_level 4 --limit 20 \
  --num_samples 8 --output_dir $OUT/samples
step sample_transformers_gpu $TT sample --backend transformers --device cuda --model_name_or_path $MODEL \
  --problems $PROBLEMS --per_level 2 --limit 10 --num_samples 4 --output_dir $OUT/samples_hf
step label_mc_vllm $TT label-mc --backend vllm --model_name_or_path $MODEL --problems $PROBLEMS --per_level 2 \
  --limit 10 --num_samples 4 --num_rollouts 4 --output_dir $OUT/labels

# -- PRM training: mixed precision (fp32 master weights, bf16 compute), DDP, DeepSpeed, LoRA, reference features
step train_prm_bf16 $ACC launch --config_file accelerate_configs/single_process.yaml recipes/train_prm.py \
  --config $PRM_CFG --model_name_or_path $MODEL --dataset_path $OUT/labels --output_dir $OUT/prm \
  --num_train_epochs 1 --bf16 true
step train_prm_value_head $TT train-prm --config $PRM_CFG --model_name_or_path $MODEL --dataset_path $OUT/labels \
  --output_dir $OUT/prm_value_head --max_steps 4 --reference_features false --bf16 true
step train_prm_zero2_bf16 $ACC launch --config_file accelerate_configs/deepspeed_zero2.yaml --num_processes 1 \
  recipes/train_prm.py --config $PRM_CFG --model_name_or_path $MODEL --dataset_path $OUT/labels \
  --output_dir $OUT/prm_zero2_1gpu --num_train_epochs 1 --reference_features false --bf16 true
step train_prm_lora_zero3 $ACC launch --config_file accelerate_configs/deepspeed_zero3.yaml --num_processes 1 \
  recipes/train_prm.py --config $PRM_CFG --model_name_or_path $MODEL --dataset_path $OUT/labels \
  --output_dir $OUT/prm_lora_zero3 --max_steps 4 --use_lora true --reference_features false --bf16 true
step reload_lora_zero3 $TT eval-prm --prm_path $OUT/prm_lora_zero3 --labels $OUT/labels --prm_device cuda \
  --output_dir $OUT/eval_prm_lora_zero3
multi_gpu train_prm_ddp_2gpu $ACC launch --config_file accelerate_configs/multi_gpu_ddp.yaml --num_processes 2 \
  recipes/train_prm.py --config $PRM_CFG --model_name_or_path $MODEL --dataset_path $OUT/labels \
  --output_dir $OUT/prm_ddp --num_train_epochs 1 --bf16 true
multi_gpu train_prm_zero2_2gpu $ACC launch --config_file accelerate_configs/deepspeed_zero2.yaml --num_processes 2 \
  recipes/train_prm.py --config $PRM_CFG --model_name_or_path $MODEL --dataset_path $OUT/labels \
  --output_dir $OUT/prm_zero2 --num_train_epochs 1 --reference_features false --bf16 true
multi_gpu train_prm_zero3_2gpu $ACC launch --config_file accelerate_configs/deepspeed_zero3.yaml --num_processes 2 \
  recipes/train_prm.py --config $PRM_CFG --model_name_or_path $MODEL --dataset_path $OUT/labels \
  --output_dir $OUT/prm_zero3 --num_train_epochs 1 --reference_features false --bf16 true

# -- scoring on the GPU: eval-prm with the likelihood baseline, search with the PRM beside a vLLM engine
step eval_prm_gpu $TT eval-prm --prm_path $OUT/prm --labels $OUT/labels --samples $OUT/samples/samples.parquet \
  --likelihood_baseline $MODEL --prm_device cuda --output_dir $OUT/eval_prm
step search_vllm $TT search --backend vllm --model_name_or_path $MODEL --prm_path $OUT/prm --prm_device cuda \
  --problems $PROBLEMS --per_level 2 --limit 10 --max_budget 8 \
  --methods majority best_of_n_weighted beam_search lookahead dvts slg --output_dir $OUT/search
step search_flops_filled $PY -c "import sys; from ttstrain.io import read_parquet; rows = read_parquet('$OUT/search/results.parquet'); \
bad = [r['method'] for r in rows if not r['policy_flops'] or (r['method'] != 'majority' and not r['verifier_flops'])]; \
print(len(rows), 'rows;', len(bad), 'without FLOPs', sorted(set(bad))); sys.exit(bool(bad) or not rows)"
step search_likelihood_vllm $TT search --backend vllm --model_name_or_path $MODEL --verifier likelihood \
  --prm_device cuda --problems $PROBLEMS --per_level 2 --limit 10 --max_budget 4 \
  --methods best_of_n_weighted beam_search --output_dir $OUT/search_likelihood

# -- revisions and compute-optimal: a second engine (the revision model) after the first has exited
step build_revisions_vllm $TT build-revisions --backend vllm --model_name_or_path $MODEL --problems $PROBLEMS \
  --per_level 2 --limit 10 --num_samples 8 --output_dir $OUT/revision_data
step train_revision_bf16 $ACC launch --config_file accelerate_configs/single_process.yaml recipes/train_revision.py \
  --config recipes/default/revision/config_pipeline.yaml --model_name_or_path $MODEL --dataset_path $OUT/revision_data \
  --output_dir $OUT/revision_model --max_steps 8 --bf16 true --use_cpu false
step eval_revision_vllm $TT eval-revision --backend vllm --model_name_or_path $OUT/revision_model \
  --prm_path $OUT/prm --prm_device cuda --base_samples $OUT/samples/samples.parquet --problems $PROBLEMS \
  --per_level 2 --limit 10 --num_chains 2 --chain_length 2 --output_dir $OUT/eval_revision
step compute_optimal $TT compute-optimal --search_dirs $OUT/search --samples $OUT/samples/samples.parquet \
  --revisions $OUT/eval_revision/chains.parquet --output_dir $OUT/compute_optimal

# -- the whole demo on vLLM: one policy engine at its planned share, shut down before eval-revision starts its own
step demo_vllm_quick $TT demo --backend vllm --quick --output_dir $OUT/demo

[[ $DRY == 0 ]] && echo "gpu smoke: $passed passed, $failed failed, $skipped skipped (logs in $OUT)"
[[ $DRY == 1 || $failed == 0 ]]
