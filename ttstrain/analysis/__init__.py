"""What search results say: metrics, baselines, best-of-N prediction, compute-optimal curves."""
