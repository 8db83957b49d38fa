"""The shadow comparator: stable's and the canary's answers to the same live requests."""
