"""Writing files safely: atomic outputs."""
