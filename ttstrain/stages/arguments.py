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
from typing import ClassVar

from ttstrain.prm.verifiers import prm_format_choices


@dataclass
class PolicyArguments:
    # where and how fast the policy runs, not what it writes: a resume need not match them
    runtime_fields: ClassVar[tuple[str, ...]] = ("device", "gpu_memory_utilization", "max_batch_rows")

    model_name_or_path: str = field(default="default", metadata={"help": "Policy: 'default' (the shipped world), 'smollm2-135m', a path or a hub id."})
    backend: str = field(default="transformers", metadata={"help": "Generation backend: transformers or vllm."})
    dtype: str = field(default="float32", metadata={"help": "Policy dtype: float32, bfloat16, float16, or auto (the checkpoint's; vLLM runs a float32 checkpoint in bfloat16). Both backends run in it; the run's config.json records the dtype the model ran in."})
    device: str = field(default="auto", metadata={"help": "Device of the transformers backend: auto (cuda if available, else cpu), cpu, cuda or cuda:N. vLLM takes the first visible GPU: give each shard its own with CUDA_VISIBLE_DEVICES."})
    gpu_memory_utilization: float | None = field(default=None, metadata={"help": "vLLM's share of its GPU's memory (vLLM refuses to start when less is free); unset: 0.9, or 0.9 less what the verifier needs when search loads it on the same GPU (ttstrain.devices)."})
    max_batch_rows: int = field(default=256, metadata={"help": "Rows per forward batch (transformers backend)."})


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


@dataclass
class ChunkArguments:
    """How a chunked stage's work is cut and shared (`ttstrain.runner.chunked`); none changes the rows."""

    runtime_fields: ClassVar[tuple[str, ...]] = ("output_dir", "shard", "merge_only", "executor", "num_workers",
                                                 "gpus_per_worker", "cpus_per_worker", "ray_address")

    shard: str | None = field(default=None, metadata={"help": "i/n: this job runs the chunks whose index mod n is i (n jobs write one output folder; the last to finish merges, or run --merge_only true)."})
    merge_only: bool = field(default=False, metadata={"help": "Only merge the finished chunks of a sharded run."})
    executor: str = field(default="local", metadata={"help": "What runs the chunks: local (this process, one chunk after another), processes (--num_workers processes forked from this one on this machine's CPU cores, sharing its loaded policy; CPU and Linux only) or ray (a Ray cluster's workers, each holding its own generator and verifier; pip install 'ttstrain[ray]'; docs/scale-out.md). Rows are the same whichever runs them.", "choices": ["local", "processes", "ray"]})
    num_workers: int = field(default=2, metadata={"help": "--executor processes or ray: workers (processes, Ray actors) running chunks at once."})
    gpus_per_worker: float | None = field(default=None, metadata={"help": "--executor ray: GPUs each worker holds (unset: 1 with --backend vllm, else 0); above 1, vLLM's tensor-parallel size inside the worker."})
    cpus_per_worker: float = field(default=1.0, metadata={"help": "--executor ray: CPUs each worker holds (its torch threads on CPU). --executor processes runs one thread per process and takes only 1."})
    ray_address: str | None = field(default=None, metadata={"help": "--executor ray: the cluster to join ('auto': the one `ray start` began on this node; host:port); unset: start a local one."})


@dataclass
class VerifierArguments:
    """The verifier a stage scores with: a PRM checkpoint, how it is read, and where it runs."""

    runtime_fields: ClassVar[tuple[str, ...]] = ("prm_device", "prm_batch_size")

    prm_path: str | None = field(default=None, metadata={"help": "PRM checkpoint: a folder (ttstrain train-prm, a TRL PRM) or a hub id of a public PRM (docs/public_prms.md)."})
    prm_format: str = field(default="auto", metadata={"help": "How the PRM at prm_path is read: auto (ttstrain and TRL checkpoints from their config, the known public PRMs from their hub id), ttstrain, trl, math-shepherd, rlhflow, qwen2.5-math-prm or skywork (docs/public_prms.md).", "choices": prm_format_choices()})
    prm_backend: str = field(default="transformers", metadata={"help": "What runs the PRM: transformers (on prm_device), or vllm (vLLM's pooling runner on the first visible GPU; not for PRMs with reference features).", "choices": ["transformers", "vllm"]})
    prm_device: str = field(default="auto", metadata={"help": "Device of the verifier (and of a PRM's reference model): auto (cuda if available, else cpu), cpu, cuda or cuda:N; config.json records the resolved one."})
    prm_dtype: str = field(default="auto", metadata={"help": "Dtype the verifier is loaded in (auto: the checkpoint's)."})
    prm_batch_size: int = field(default=32, metadata={"help": "Solutions per verifier forward batch."})
