"""The main job: the whole ttstrain pipeline on the default world, end to end, in one command.

    ttstrain demo --output_dir runs/demo            # full sizes
    ttstrain demo --output_dir runs/quick --quick   # smaller sizes, same stages (a few minutes)
    ttstrain demo --print_config                    # the stage configs it would run, then exit
    ttstrain demo --set label_mc.per_level=8 search.max_budget=8   # one value of a recipe changed

`ttstrain demo` is `ttstrain pipeline recipes/default --output_dir runs/demo` (`ttstrain.pipeline.run`):
every stage setting comes from `recipes/default/<stage>/config_pipeline.yaml`, then
`recipes/default/quick.yaml` with --quick, then --set; the stages and the report are the pipeline's,
and a stopped demo resumes stage by stage the same way.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from ttstrain.parsing import StageParser
from ttstrain.pipeline.run import PipelineConfig, pipeline_stage_configs, run_main, run_pipeline

DEMO_OUTPUT = "runs/demo"


@dataclass
class DemoConfig(PipelineConfig):
    output_dir: str | None = field(default=DEMO_OUTPUT, metadata={"help": "Output directory for data, report and plots."})
    model_name_or_path: str | None = field(default="default", metadata={"help": "Policy: 'default' (shipped world), a path or hub id."})


def demo_stage_configs(cfg: DemoConfig) -> dict:
    return pipeline_stage_configs(cfg)


def run_demo(cfg: DemoConfig) -> dict:
    return run_pipeline(cfg)


def make_parser():
    return StageParser((DemoConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(sys.argv[1:] if args is None else args)
    run_main(cfg, "demo")


if __name__ == "__main__":
    main()
