"""HTTP plumbing shared by the gateway and the comparator: ASGI helpers, a Triton client."""
