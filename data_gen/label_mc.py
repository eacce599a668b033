"""Monte Carlo step labels for PRM training (thin wrapper of ttstrain.stages.label_mc).

    python data_gen/label_mc.py --config recipes/default/label_mc/config_pipeline.yaml
    python data_gen/label_mc.py --config recipes/default/label_mc/config_paper.yaml --shard 0/4
"""

from ttstrain.stages.label_mc import main

if __name__ == "__main__":
    main()
