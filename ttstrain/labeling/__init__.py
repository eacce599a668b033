"""Data labelling for PRM training: Monte Carlo step labels."""
