"""Revision SFT, launchable with accelerate (thin wrapper of ttstrain.stages.train_revision).

    accelerate launch --config_file accelerate_configs/single_process.yaml recipes/train_revision.py \
        --config recipes/default/revision/config_pipeline.yaml
"""

from ttstrain.user_errors import report_user_errors
from ttstrain.stages.train_revision import main

if __name__ == "__main__":
    with report_user_errors("train-revision"):
        main()
