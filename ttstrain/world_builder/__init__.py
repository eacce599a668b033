"""Builds the arithmetic world's policies (training data, checking, slipped steps, card)."""
