"""Rollouts: the spec, the judge and the stepper (pure), and the engine around them."""
