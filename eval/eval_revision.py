"""Evaluate a revision model along sampled chains (thin wrapper of ttstrain.stages.eval_revision).

    python eval/eval_revision.py --model_name_or_path runs/revision --per_level 10 --num_chains 4 --chain_length 4 \
        --prm_path runs/prm --orm_path runs/revision_orm --output_dir runs/eval_revision
"""

from ttstrain.stages.eval_revision import main

if __name__ == "__main__":
    main()
