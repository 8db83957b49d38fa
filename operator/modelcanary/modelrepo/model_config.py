"""Triton model configuration: build, print, parse and compare `config.pbtxt`.

The schema is Triton's own `ModelConfig` protobuf message (from tritonclient), so a
config that parses here is one Triton parses. Pure: text in, text out.

Version policy: the model's `config.pbtxt` serves every version in the directory (a
local server loads stable and canary side by side); `configs/v<N>.pbtxt` pins exactly
version N and is selected in a cluster with `tritonserver --model-config-name=v<N>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from modelcanary.errors import UsageError
from modelcanary.modelrepo.tensorspec import Signature, TensorSpec, dtype_by_triton

BACKEND = "onnxruntime"
MODEL_FILENAME = "model.onnx"
HEADER = "# Triton model configuration written by `modelcanary export`; edit with care.\n"


@dataclass(frozen=True)
class ServingOptions:
    """How Triton should serve the model: batching, instances and accelerators."""

    max_batch_size: int = 8
    dynamic_batching: bool = False
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int | None = None
    instances: int | None = None
    kind: str = "cpu"
    accelerator: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise UsageError naming the flag when the options contradict each other."""
        if self.max_batch_size < 0:
            raise UsageError("--max-batch-size must be 0 (no batching) or a positive integer")
        if self.dynamic_batching and self.max_batch_size == 0:
            raise UsageError("--dynamic-batching needs --max-batch-size greater than 0")
        if not self.dynamic_batching and (
            self.preferred_batch_sizes or self.max_queue_delay_us is not None
        ):
            raise UsageError(
                "--preferred-batch-size and --max-queue-delay-us need --dynamic-batching"
            )
        for size in self.preferred_batch_sizes:
            if not 0 < size <= self.max_batch_size:
                raise UsageError(
                    f"--preferred-batch-size {size} must be between 1 and --max-batch-size "
                    f"{self.max_batch_size}"
                )
        if self.max_queue_delay_us is not None and self.max_queue_delay_us < 0:
            raise UsageError("--max-queue-delay-us must not be negative")
        if self.instances is not None and self.instances < 1:
            raise UsageError("--instances must be at least 1")
        if self.kind not in ("cpu", "gpu"):
            raise UsageError(f"--kind {self.kind!r} is not valid; use cpu or gpu")
        if self.accelerator is not None:
            if self.accelerator not in ("tensorrt", "tensorrt:fp16"):
                raise UsageError(
                    f"--accelerator {self.accelerator!r} is not valid; use tensorrt or "
                    "tensorrt:fp16"
                )
            if self.kind != "gpu":
                raise UsageError("--accelerator tensorrt runs on GPU instances: add --kind gpu")


def build_config(
    name: str, signature: Signature, options: ServingOptions, versions: list[int] | None
) -> mc.ModelConfig:
    """A `ModelConfig` for the ONNX Runtime backend.

    `versions=None` serves all versions in the directory; a list pins exactly those.
    """
    config = mc.ModelConfig(name=name, backend=BACKEND)
    if versions is None:
        config.version_policy.all.SetInParent()
    else:
        config.version_policy.specific.versions.extend(versions)
    config.max_batch_size = options.max_batch_size if signature.batched else 0
    for spec in signature.inputs:
        tensor = config.input.add(name=spec.name, data_type=_triton_type(spec))
        _set_dims(tensor, spec)
    for spec in signature.outputs:
        tensor = config.output.add(name=spec.name, data_type=_triton_type(spec))
        _set_dims(tensor, spec)
    if options.dynamic_batching:
        config.dynamic_batching.SetInParent()
        config.dynamic_batching.preferred_batch_size.extend(options.preferred_batch_sizes)
        if options.max_queue_delay_us is not None:
            config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    group = config.instance_group.add(
        kind=mc.ModelInstanceGroup.KIND_GPU
        if options.kind == "gpu"
        else mc.ModelInstanceGroup.KIND_CPU
    )
    if options.instances is not None:
        group.count = options.instances
    if options.accelerator is not None:
        trt = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
            name="tensorrt"
        )
        if options.accelerator.endswith(":fp16"):
            trt.parameters["precision_mode"] = "FP16"
    for key, value in sorted(options.parameters.items()):
        config.parameters[key].string_value = value
    return config


def _triton_type(spec: TensorSpec) -> int:
    return int(mc.DataType.Value(spec.dtype.triton))


def _set_dims(tensor: mc.ModelInput | mc.ModelOutput, spec: TensorSpec) -> None:
    if spec.dims:
        tensor.dims.extend(spec.dims)
    else:
        # A scalar per sample: Triton wants non-empty dims, reshaped to a scalar.
        tensor.dims.append(1)
        tensor.reshape.SetInParent()


def render(config: mc.ModelConfig) -> str:
    """The config in protobuf text format, as Triton reads it from config.pbtxt."""
    return HEADER + str(text_format.MessageToString(config))


def parse(text: str, source: str) -> mc.ModelConfig:
    """Parse config.pbtxt text into a `ModelConfig`, naming the file on error."""
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise UsageError(f"{source}: not a valid Triton model configuration: {exc}") from None


def signature_of(config: mc.ModelConfig) -> Signature:
    """The signature a parsed config declares."""

    def specs(tensors: list[mc.ModelInput] | list[mc.ModelOutput]) -> tuple[TensorSpec, ...]:
        result = []
        for tensor in tensors:
            dims = tuple(int(d) for d in tensor.dims)
            if tensor.HasField("reshape") and not tensor.reshape.shape:
                dims = ()
            dtype = dtype_by_triton(mc.DataType.Name(tensor.data_type))
            result.append(TensorSpec(tensor.name, dtype, dims))
        return tuple(result)

    return Signature(
        inputs=specs(list(config.input)),
        outputs=specs(list(config.output)),
        batched=config.max_batch_size > 0,
    )


def pinned_config_name(version: int) -> str:
    """The `--model-config-name` that selects the config pinning one version."""
    return f"v{version}"
