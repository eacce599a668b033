"""Argument groups every generating stage shares, declared once and composed into each stage config.

As TRL composes `ScriptArguments` and `ModelConfig`, a stage config subclasses the groups it uses
and adds its own fields; a subclass that needs another default redeclares that one field and says
so in its docstring. One name per concept across every command:

    --model_name_or_path   the policy (or revision model) that generates: 'default', a path or hub id
    --prm_path             a PRM checkpoint folder (ttstrain train-prm) that scores
    --problems --split --per_level --limit --data_dir   which problems
    --output_dir --seed    where a stage writes, and the seed of everything it draws

    @dataclass
    class SampleConfig(PolicyArguments, ProblemArguments, PromptArguments):
        num_samples: int = field(default=16, metadata={"help": "Samples per problem."})
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PolicyArguments:
    model_name_or_path: str = field(default="default", metadata={"help": "Policy: 'default' (the shipped world), 'smollm2-135m', a path or a hub id."})
    backend: str = field(default="transformers", metadata={"help": "Generation backend: transformers or vllm."})
    dtype: str = field(default="float32", metadata={"help": "Policy dtype: float32, bfloat16, float16, or auto (the checkpoint's; vLLM runs a float32 checkpoint in bfloat16). Both backends run in it; the run's config.json records the dtype the model ran in."})
    device: str = field(default="auto", metadata={"help": "Device of the transformers backend: auto (cuda if available, else cpu), cpu, cuda or cuda:N. vLLM takes the first visible GPU: give each shard its own with CUDA_VISIBLE_DEVICES."})
    gpu_memory_utilization: float | None = field(default=None, metadata={"help": "vLLM's share of its GPU's memory (vLLM refuses to start when less is free); unset: 0.9, or 0.9 less what the verifier needs when search loads it on the same GPU (ttstrain.devices)."})
    max_batch_rows: int = field(default=256, metadata={"help": "Rows per forward batch (transformers backend)."})


# PolicyArguments fields that change where and how fast a policy runs, not what it writes: left out of run fingerprints
RUNTIME_FIELDS = ("max_batch_rows", "device", "gpu_memory_utilization")


@dataclass
class ProblemArguments:
    problems: str = field(default="arith", metadata={"help": "Problem source: arith, math500, math_train, gsm8k, a file or a hub id (ttstrain.problems)."})
    split: str | None = field(default="test", metadata={"help": "Split of the problem source."})
    per_level: int | None = field(default=20, metadata={"help": "Problems per level (arith only)."})
    limit: int | None = field(default=None, metadata={"help": "Use the first N problems."})
    levels: list[int] | None = field(default=None, metadata={"help": "Keep only these difficulty levels (all: unset); few-shot examples from the arith pool come from them too."})
    data_dir: str | None = field(default=None, metadata={"help": "Override of the offline data directory."})


@dataclass
class PromptArguments:
    few_shot: int = field(default=0, metadata={"help": "Worked examples in the prompt."})
    few_shot_source: str = field(default="arith", metadata={"help": "Pool of worked examples: gsm8k or arith."})
    prompt_format: str = field(default="auto", metadata={"help": "plain, few_shot or chat (the tokenizer's chat template, for instruct models); auto: few_shot when --few_shot > 0, else plain. Recorded in config.json; a PRM trained on these rows records it too."})
    system_prompt: str | None = field(default=None, metadata={"help": "System turn of the chat format."})
    step_separator: str = field(default="auto", metadata={"help": "What separates steps: line (one step a line), paragraph (blank-line paragraphs), or a string with escapes such as '\\n\\n'; auto: paragraph for --prompt_format chat, else line. Recorded with the prompt format; every stage and PRM that reads these rows uses it."})
    solution_end: str = field(default="auto", metadata={"help": "What ends a solution: eos (the end-of-sequence token only) or blank_line (also an empty line, as few-shot base models end); auto: as the named or default step format ends (paragraph: eos, line: blank_line), and for a separator typed out, eos when it holds a blank line, else blank_line."})
