"""Sample and grade N solutions per problem (thin wrapper of ttstrain.stages.sample).

    python data_gen/sample_solutions.py --config recipes/default/sample/config_world.yaml
    python data_gen/sample_solutions.py --config recipes/smollm2-135m/sample/config_gsm8k.yaml
"""

from ttstrain.stages.sample import main

if __name__ == "__main__":
    main()
