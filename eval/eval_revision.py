"""Evaluate a revision model along sampled chains (thin wrapper of ttstrain.stages.eval_revision).

    python eval/eval_revision.py --model runs/revision --per_level 10 --num_chains 4 --chain_length 4 \
        --prm runs/prm --orm runs/revision_orm --output_dir runs/eval_revision
"""

from ttstrain.stages.eval_revision import main

if __name__ == "__main__":
    main()
