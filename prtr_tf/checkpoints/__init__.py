"""Checkpoint files: reading official PyTorch checkpoints and converting them, and the weights files of this project."""
