"""Evaluate a PRM: held-out BCE, step AUROC, best-of-N vs majority, ProcessBench F1
(thin wrapper of ttstrain.stages.eval_prm).

    python eval/eval_prm.py --prm_path runs/demo/prm --labels runs/demo/label_mc-24x8x8-seed0 --samples runs/demo/samples.parquet
    python eval/eval_prm.py --prm_path runs/prm --processbench ../shared/data/processbench/gsm8k.json.gz
"""

from ttstrain.stages.eval_prm import main

if __name__ == "__main__":
    main()
