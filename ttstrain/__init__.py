"""ttstrain: train process reward models and revision models, and measure what they buy at test time.

See README.md for the pipeline and one command per stage.
"""

__version__ = "0.1.0"
