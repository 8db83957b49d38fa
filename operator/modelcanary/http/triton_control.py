"""The header that carries the stack's key to Triton's control APIs (repository, model
config, shared memory, logging, trace), which tritonserver restricts to it: the server's
flags and every part that asks Triton with the key (loads, the guard) share these names.
gRPC clients send it as metadata `triton-grpc-protocol-<header>`, as Triton requires."""

CONTROL_HEADER = "modelcanary-control"
GRPC_CONTROL_HEADER = f"triton-grpc-protocol-{CONTROL_HEADER}"
