"""Test-time search, methods x budgets, over a problem set (thin wrapper of ttstrain.stages.run_search).

    python eval/run_search.py --prm_path runs/default/prm_demo --max_budget 16
    python eval/run_search.py --prm_path runs/default/prm_demo --methods majority best_of_n_weighted beam_search
"""

from ttstrain.stages.run_search import main

if __name__ == "__main__":
    main()
