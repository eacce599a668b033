"""Build the default world's policy: pretrain a small Llama on the arithmetic task, then measure it.

The policy is a 6-layer, 128-wide character-level Llama (about 1.2M parameters) trained from
scratch on problems drawn on the fly from the training pool (one level per batch, loss on the
solution and end-of-sequence token only). The schedule is fixed in steps, not minutes, so the
same seed rebuilds the same checkpoint (on the same torch build and thread count). It is meant
to stay imperfect the way real policies are: greedy pass@1 falling from level 1 to level 5, sampled
pass@16 well above pass@1, wrong samples failing at an identifiable step (its measured card:
`world_card.json`, and docs/results.md).

The checkpoints ship in the package (world v2, the default, in `ttstrain/world/default_policy/`;
its checking phase in `ttstrain/world/v2_check_policy/`; world v1 in `ttstrain/world/v1_policy/`; a
few MB of safetensors + tokenizer each) so the demo and the tests start from them without
retraining; they load with `AutoModelForCausalLM` / `AutoTokenizer` like any hub checkpoint. World
v1 is 1200 steps from scratch + 700 from that checkpoint; world v2's checking phase reads v1 on with
checked solutions (`--check_fraction`, ttstrain.world_builder.checking; recipes/default/world/config_v2_check.yaml),
and its last phase reads that on with solving text that carries locatable mistakes
(`--solve_step_error_rate`, ttstrain.world_builder.slipped; recipes/default/world/config_v2.yaml). Rebuild all with

    make build-world    # v1's two phases, then v2's two (time: docs/results.md)
    ttstrain build-world --max_steps 50 --output_dir /tmp/w   # a quick smoke build

Training has a phase change (copying the operands from the question is learned before the
arithmetic; docs/results.md has the steps it took): `--probe_every` prints greedy pass@1 on a few
test problems while training.

Next to the weights it writes `build_config.json` (the resolved config) and `world_card.json`
(greedy and sampled pass rates per level on held-out test problems, first-error kinds).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ttstrain.generation.hf import HFGenerator
from ttstrain.generation.sampling import sample_solutions
from ttstrain.parsing import StageParser
from ttstrain.prompts import format_example, format_prompt
from ttstrain.world import task
from ttstrain.world.task import CONTEXT_CHARS, LEVELS, problems_split
from ttstrain.world_builder.card import write_world_card
from ttstrain.world_builder.checking import SLIPS, check_example
from ttstrain.world_builder.slipped import slipped_solution

DEFAULT_POLICY_DIR = Path(__file__).resolve().parent.parent / "world" / "default_policy"


@dataclass
class BuildWorldConfig:
    output_dir: str = field(default=str(DEFAULT_POLICY_DIR), metadata={"help": "Where the checkpoint is written."})
    seed: int = field(default=0, metadata={"help": "Seed for initialisation and the training stream."})
    hidden_size: int = field(default=128, metadata={"help": "Model width."})
    num_hidden_layers: int = field(default=6, metadata={"help": "Transformer layers."})
    num_attention_heads: int = field(default=4, metadata={"help": "Attention heads."})
    intermediate_size: int = field(default=384, metadata={"help": "MLP width."})
    max_steps: int = field(default=1200, metadata={"help": "Optimizer steps (the schedule ends exactly here)."})
    batch_size: int = field(default=64, metadata={"help": "Problems per step; one level per batch."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak AdamW learning rate."})
    warmup_steps: int = field(default=50, metadata={"help": "Linear warmup steps."})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "Cosine decay floor as a fraction of the peak."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    level_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0, 1.0],
                                       metadata={"help": "Sampling weight of levels 1..5 per batch."})
    num_threads: int = field(default=2, metadata={"help": "torch CPU threads (part of what makes a rebuild identical)."})
    eval_per_level: int = field(default=200, metadata={"help": "Test problems per level for the greedy pass@1 card."})
    eval_sampled_per_level: int = field(default=50, metadata={"help": "Test problems per level for sampled pass@k."})
    eval_samples: int = field(default=16, metadata={"help": "Samples per problem for sampled pass@k."})
    init_from: str | None = field(default=None, metadata={"help": "Start from this checkpoint's weights (a second phase)."})
    eval_only: bool = field(default=False, metadata={"help": "Skip training; re-measure the checkpoint in output_dir."})
    log_every: int = field(default=50, metadata={"help": "Print the training loss every this many steps."})
    probe_every: int = field(default=200, metadata={"help": "Every this many steps, print greedy pass@1 on a few test "
                                                            "problems per level (0: never)."})
    save_probe_checkpoints: bool = field(default=False, metadata={"help": "Also save the model at every probe, "
                                                                           "under output_dir/checkpoints/step-N."})
    probe_per_level: int = field(default=10, metadata={"help": "Test problems per level for the training probe."})
    check_fraction: float = field(default=0.0, metadata={"help": "Fraction of each batch that is checked-solution text "
                                                                 "(ttstrain.world_builder.checking; world v2's mixture), the rest solving."})
    check_error_rate: float = field(default=0.6, metadata={"help": "Fraction of checked solutions with a wrong step."})
    check_style: str = field(default="first_error", metadata={"help": "first_error: a checked solution stops at its "
                                                                  "one wrong step; every_step: each step may be wrong "
                                                                  "(check_error_rate each) and is judged on its own."})
    check_slips: str = field(default="any_digit", metadata={"choices": ["any_digit", "carry"], "help": "How a checked solution's arithmetic slips "
                                                                    "go wrong: any_digit (any digit changed, or off by "
                                                                    "1, 2 or 10) or carry (a digit above the units off "
                                                                    "by one or two, as the policy's own slips are)."})
    solve_step_error_rate: float = field(default=0.0, metadata={"help": "In solving text, the probability that each "
                                                                     "operation line goes wrong in a locatable way (left "
                                                                     "out, or another line's operand; ttstrain.world_builder.slipped) "
                                                                     "and the wrong value is carried on."})
    check_slipped_share: float = field(default=0.0, metadata={"help": "With check_style every_step, the share of a "
                                                                    "checked solution's wrong steps that are slipped "
                                                                    "solving text's locatable mistakes (the next line's "
                                                                    "operation, another line's operand)."})
    solve_context_share: float = field(default=0.0, metadata={"help": "Share of the solving rows read as a document: "
                                                                   "after 1 to solve_context_max other worked problems "
                                                                   "(format_example, any level), as real text puts several "
                                                                   "together; loss on the last solution only."})
    solve_context_max: int = field(default=4, metadata={"help": "Most worked problems before a solving row's problem."})
    verdict_weight: float = field(default=1.0, metadata={"help": "Loss weight of a checked solution's verdict tokens "
                                                                 "(the newline or mark after each step) against 1 for "
                                                                 "every other trained token."})
    checkpoint_every_s: float = field(default=180.0, metadata={"help": "Save a resumable training state every this many "
                                                                       "seconds (under output_dir/resume_state)."})
    resume: bool = field(default=False, metadata={"help": "Continue from output_dir/resume_state (a build that was "
                                                          "interrupted); refused if the config differs."})
    stop_after_steps: int | None = field(default=None, metadata={"help": "End this run after this many steps of the "
                                                                         "schedule, leaving a resumable state (to split a build)."})


def make_model(cfg: BuildWorldConfig, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_attention_heads,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def training_batch(rng: random.Random, level: int, batch_size: int, tokenizer, check_fraction: float = 0.0,
                   check_error_rate: float = 0.6, verdict_weight: float = 1.0,
                   check_style: str = "first_error", check_slips: str = "any_digit",
                   solve_step_error_rate: float = 0.0, check_slipped_share: float = 0.0,
                   solve_context_share: float = 0.0, solve_context_max: int = 4) -> dict[str, torch.Tensor]:
    """Right-padded input ids and labels for one batch of one level; prompt positions carry -100.

    A `check_fraction` of the rows are checked solutions (loss on the verdicts only). With a
    `verdict_weight` other than 1 the batch carries per-token loss `weights`: that weight on the
    first token after each copied step (where the verdict is decided), 1 elsewhere. With a
    `solve_step_error_rate` the solving rows carry locatable mistakes (ttstrain.world_builder.slipped). A
    `solve_context_share` of the solving rows come after 1 to `solve_context_max` worked problems of
    any level (written as solving text is), untrained, so the policy solves wherever its problem
    starts; never the same problem, never a previous-attempt head (the revision format)."""
    def solving_text(problem) -> str:
        return slipped_solution(rng, problem, solve_step_error_rate) if solve_step_error_rate else problem.solution

    seqs, labels, checked = [], [], []
    for _ in range(batch_size):
        checked.append(bool(check_fraction) and rng.random() < check_fraction)
        if checked[-1]:
            ids, lab = check_example(rng, level, tokenizer, check_error_rate, check_style, check_slips,
                                     check_slipped_share)
            seqs.append(ids)
            labels.append(lab)
            continue
        p = task.sample_training_problem(rng, level)
        shots, shot_chars = [], 0
        if solve_context_share and rng.random() < solve_context_share:
            for _ in range(rng.randint(1, solve_context_max)):
                o = task.sample_training_problem(rng, rng.randint(1, 5))
                if o.question == p.question:  # never the problem it is about to solve
                    continue
                shot = (o.question, solving_text(o))
                shot_chars += len(format_example(*shot))
                if shot_chars > CONTEXT_CHARS:
                    break
                shots.append(shot)
        prompt_ids = tokenizer(format_prompt(p.question, shots))["input_ids"]
        solution = solving_text(p)
        sol_ids = tokenizer(solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        seqs.append(prompt_ids + sol_ids)
        labels.append([-100] * len(prompt_ids) + sol_ids)
    width = max(len(s) for s in seqs)
    ids = torch.full((batch_size, width), tokenizer.pad_token_id, dtype=torch.long)
    lab = torch.full((batch_size, width), -100, dtype=torch.long)
    att = torch.zeros((batch_size, width), dtype=torch.long)
    for k, (s, l) in enumerate(zip(seqs, labels)):
        ids[k, :len(s)] = torch.tensor(s)
        lab[k, :len(l)] = torch.tensor(l)
        att[k, :len(s)] = 1
    batch = {"input_ids": ids, "labels": lab, "attention_mask": att}
    if verdict_weight != 1.0:
        # a verdict is a checked row's first trained token after an untrained (copied) one
        trained = lab != -100
        verdict = trained[:, 1:] & ~trained[:, :-1] & torch.tensor(checked)[:, None]
        batch["weights"] = torch.ones((batch_size, width))
        batch["weights"][:, 1:][verdict] = verdict_weight
    return batch


def weighted_loss(model, batch: dict) -> torch.Tensor:
    """Next-token cross-entropy averaged with per-token weights (the HF loss when all weights are 1)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels, weights = batch["labels"][:, 1:], batch["weights"][:, 1:]
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                           ignore_index=-100, reduction="none")
    w = weights.reshape(-1) * (labels.reshape(-1) != -100)
    return (ce * w).sum() / w.sum()


def lr_at(step: int, cfg: BuildWorldConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    floor = cfg.min_lr_ratio
    return cfg.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def probe_policy(model, tokenizer, per_level: int, seed: int) -> dict[int, float]:
    """Greedy pass@1 per level on `per_level` test problems: a cheap view of training progress."""
    model.eval()
    rows = sample_solutions(HFGenerator(model, tokenizer), problems_split("test", per_level, seed), n=1,
                            temperature=0.0, seed=seed, desc="probe", progress=False)
    return {level: round(sum(r["correct"] for r in rows if r["level"] == level) / per_level, 2) for level in LEVELS}


def train_policy(cfg: BuildWorldConfig):
    from ttstrain.world.tokenizer import build_char_tokenizer  # transformers: at use, not import

    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(f"build-world-{cfg.seed}")
    tokenizer = build_char_tokenizer()
    model = make_model(cfg, tokenizer)
    if cfg.init_from:
        from transformers import LlamaForCausalLM

        from ttstrain.models import resolve_model

        model.load_state_dict(LlamaForCausalLM.from_pretrained(resolve_model(cfg.init_from)).state_dict())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.learning_rate, betas=(0.9, 0.95))
    levels = [1, 2, 3, 4, 5]
    model.train()
    tokens_seen, running, first_step, seconds_before = 0, None, 0, 0.0
    state_dir = Path(cfg.output_dir) / RESUME_DIR
    if cfg.resume:
        first_step, tokens_seen, running, seconds_before = load_resume_state(state_dir, cfg, model, opt, rng)
        print(f"resuming from step {first_step} of {cfg.max_steps} ({state_dir})")
    elif (state_dir / RESUME_STATE).exists():
        raise SystemExit(f"{state_dir} holds an interrupted build; pass --resume to continue it, or delete it")
    t0, last_save = time.time() - seconds_before, time.time()
    end = cfg.max_steps if cfg.stop_after_steps is None else min(cfg.max_steps, cfg.stop_after_steps)
    bar = tqdm(range(first_step, end), desc="build-world", mininterval=5, initial=first_step, total=cfg.max_steps)
    for step in bar:
        level = rng.choices(levels, weights=cfg.level_weights)[0]
        batch = training_batch(rng, level, cfg.batch_size, tokenizer, cfg.check_fraction, cfg.check_error_rate,
                               cfg.verdict_weight, cfg.check_style, cfg.check_slips, cfg.solve_step_error_rate,
                               cfg.check_slipped_share, cfg.solve_context_share, cfg.solve_context_max)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        loss = weighted_loss(model, batch) if "weights" in batch else model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens_seen += int(batch["attention_mask"].sum())
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % cfg.log_every == 0 or step == cfg.max_steps - 1:
            bar.set_postfix(loss=f"{running:.4f}", tok_s=f"{tokens_seen / (time.time() - t0):.0f}")
        if cfg.probe_every and (step + 1) % cfg.probe_every == 0 and step + 1 < cfg.max_steps:
            probe = probe_policy(model, tokenizer, cfg.probe_per_level, cfg.seed)
            bar.write(f"step {step + 1}: loss {running:.4f}, greedy pass@1 by level {probe}")
            sys.stdout.flush()  # visible in a redirected log while training goes on
            if cfg.save_probe_checkpoints:
                model.save_pretrained(Path(cfg.output_dir) / "checkpoints" / f"step-{step + 1}", safe_serialization=True)
            model.train()
        if time.time() - last_save >= cfg.checkpoint_every_s or step + 1 == end < cfg.max_steps:
            save_resume_state(state_dir, cfg, model, opt, rng, step + 1, tokens_seen, running, time.time() - t0)
            last_save = time.time()
    model.eval()
    if end < cfg.max_steps:
        return None, tokenizer, {"stopped_at_step": end}
    return model, tokenizer, {"train_tokens": tokens_seen, "train_seconds": round(time.time() - t0, 1),
                              "final_loss_ema": round(running, 5)}


RESUME_DIR, RESUME_STATE = "resume_state", "state.pt"
# fields that do not change the weights a build ends with
_RESUME_FREE = {"resume", "stop_after_steps", "checkpoint_every_s", "log_every", "eval_per_level",
                "eval_sampled_per_level", "eval_samples", "eval_only", "probe_per_level", "save_probe_checkpoints"}


def _weights_config(cfg: BuildWorldConfig) -> dict:
    return {k: v for k, v in asdict(cfg).items() if k not in _RESUME_FREE}


def save_resume_state(state_dir: Path, cfg, model, opt, rng, next_step, tokens_seen, running, seconds) -> None:
    """Everything a build needs to go on exactly as if it had not stopped; written atomically."""
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / (RESUME_STATE + ".tmp")
    torch.save({"config": _weights_config(cfg), "next_step": next_step, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "rng": rng.getstate(), "torch_rng": torch.get_rng_state(),
                "tokens_seen": tokens_seen, "running": running, "seconds": seconds}, tmp)
    tmp.replace(state_dir / RESUME_STATE)


def load_resume_state(state_dir: Path, cfg, model, opt, rng) -> tuple[int, int, float | None, float]:
    path = state_dir / RESUME_STATE
    if not path.exists():
        raise SystemExit(f"--resume: {path} does not exist (no interrupted build in {state_dir.parent})")
    state = torch.load(path, weights_only=False)
    ours, defaults = _weights_config(cfg), _weights_config(BuildWorldConfig())
    saved = {**{k: v for k, v in defaults.items() if k not in state["config"]}, **state["config"]}  # older builds
    differs = sorted(k for k in set(ours) | set(saved) if ours.get(k) != saved.get(k))
    if differs:
        raise SystemExit(f"--resume: {path} was saved by a build with another config (differs in {differs}); "
                         f"use the same options or another output_dir")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    rng.setstate(state["rng"])
    torch.set_rng_state(state["torch_rng"])
    return state["next_step"], state["tokens_seen"], state["running"], state["seconds"]


def build_world(cfg: BuildWorldConfig) -> Path:
    if cfg.check_slips not in SLIPS:  # the parser refuses it too; a config built in code is checked here
        raise SystemExit(f"check_slips {cfg.check_slips!r} is not one of {sorted(SLIPS)}")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_stats = {}
    if not cfg.eval_only:
        model, tokenizer, train_stats = train_policy(cfg)
        if model is None:
            print(f"stopped at step {train_stats['stopped_at_step']} of {cfg.max_steps}; continue with --resume")
            return out
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        (out / "build_config.json").write_text(json.dumps({**asdict(cfg), **train_stats}, indent=2) + "\n")
        shutil.rmtree(out / RESUME_DIR, ignore_errors=True)  # the finished weights supersede it
    write_world_card(out, cfg)
    return out


def make_parser(subparsers=None):
    if subparsers is not None:
        return subparsers.add_parser("build-world", help="Pretrain the default world's policy.",
                                     dataclass_types=(BuildWorldConfig,))
    return StageParser((BuildWorldConfig,))


def main(args: list[str] | None = None) -> None:
    parser = make_parser()
    (cfg,) = parser.parse_args_and_config(args)
    print(f"checkpoint written to {build_world(cfg)}")


if __name__ == "__main__":
    main()
