"""Compute-optimal scaling report from search results (thin wrapper of ttstrain.stages.compute_optimal).

    python eval/compute_optimal.py --search_dirs runs/search --output_dir runs/compute_optimal
    python eval/compute_optimal.py --search_dirs runs/search --samples runs/samples --revisions runs/chains.parquet
"""

from ttstrain.stages.compute_optimal import main

if __name__ == "__main__":
    main()
