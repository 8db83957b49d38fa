"""Example models: a small zoo for tests and docs, and the digits classifier of the demo."""
