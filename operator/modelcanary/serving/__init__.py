"""Local serving: the real Triton server on CPU, and what it needs around it."""
