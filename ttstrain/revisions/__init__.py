"""Revision models: trajectories of attempts, revision SFT data, sequential revision chains."""
