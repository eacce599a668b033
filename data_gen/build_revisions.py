"""Revision SFT data (thin wrapper of ttstrain.stages.build_revisions).

    python data_gen/build_revisions.py --config recipes/default/build_revisions/config_paper.yaml
"""

from ttstrain.stages.build_revisions import main

if __name__ == "__main__":
    main()
