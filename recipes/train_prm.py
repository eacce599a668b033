"""Train a PRM: `accelerate launch recipes/train_prm.py --config recipes/default/prm/config_pipeline.yaml`.

Thin wrapper of `ttstrain.stages.train_prm` (also `ttstrain train-prm --config ...`); the options
are the fields of `ttstrain.prm.config.PRMConfig`. Launch commands for one or several
processes, CPU or GPU, DDP or DeepSpeed: accelerate_configs/README.md.
"""

from ttstrain.user_errors import report_user_errors
from ttstrain.stages.train_prm import main

if __name__ == "__main__":
    with report_user_errors("train-prm"):
        main()
