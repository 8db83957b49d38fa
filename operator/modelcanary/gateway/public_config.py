"""What the gateway answers for a model's config (HTTP `GET /v2/models/{m}/config`, gRPC
ModelConfig): not Triton's, which is a control API kept to the stack's key, but its public
part, read from the repository's config.pbtxt: the name, the backend or platform, the max
batch size and each input's and output's name, type and dims. That is what clients such as
Triton's perf_analyzer ask for before they send requests, and no more than the model's
metadata and the gateway's batch-size check already say: never parameters, instance
groups, batching or optimization settings, label files or paths. A version of a model
exports the same signature as the others (a drop-in replacement), so one config serves
every version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from modelcanary.errors import UsageError
from modelcanary.modelrepo.repository import ModelRepository


def public_config(repository: Path | None, model: str) -> mc.ModelConfig | None:
    """The public part of a model's config.pbtxt; None without a repository holding it."""
    if repository is None:
        return None
    try:
        config = ModelRepository(repository).read_config(model)
    except UsageError:
        return None
    if config is None:
        return None
    public = mc.ModelConfig(
        name=model,
        platform=config.platform,
        backend=config.backend,
        max_batch_size=config.max_batch_size,
    )
    for tensor in config.input:
        public.input.add(
            name=tensor.name,
            data_type=tensor.data_type,
            dims=tensor.dims,
            format=tensor.format,
            is_shape_tensor=tensor.is_shape_tensor,
            optional=tensor.optional,
        )
    for tensor in config.output:
        public.output.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
    return public


def config_json(config: mc.ModelConfig) -> dict[str, Any]:
    """The config as Triton's HTTP API shows one (field names of the proto, dims numbers)."""

    def tensor(t: Any, *extra: str) -> dict[str, Any]:
        shown = {
            "name": t.name,
            "data_type": mc.DataType.Name(t.data_type),
            "dims": list(t.dims),
        }
        return {**shown, **{field: getattr(t, field) for field in extra}}

    return {
        "name": config.name,
        "platform": config.platform,
        "backend": config.backend,
        "max_batch_size": config.max_batch_size,
        "input": [
            tensor(t, "is_shape_tensor", "optional")
            | {"format": mc.ModelInput.Format.Name(t.format)}
            for t in config.input
        ],
        "output": [tensor(t) for t in config.output],
    }


def no_config(model: str) -> str:
    return (
        f"the gateway shows {model!r}'s public config from its model repository, and has "
        "none for it (set shadow.repository in the gateway's config); Triton's own config "
        "is a control API"
    )
