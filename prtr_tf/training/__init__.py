"""Training: optimisers and schedule, distribution strategy, the training loop."""
