"""Answers: extraction, normalisation, equivalence (in a sandbox) and pooling of equal answers."""
