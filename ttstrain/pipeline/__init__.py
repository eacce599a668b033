"""The whole method in one run: the demo and its recipes."""
