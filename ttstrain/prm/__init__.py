"""The process reward model: its data, batching, checkpoint record, trainer, scorers and evaluation."""
