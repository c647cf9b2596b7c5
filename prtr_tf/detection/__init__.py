"""The DETR person detector of two-stage PRTR: configuration and checkpoint import."""
