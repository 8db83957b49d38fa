"""PyTorch to ONNX with torch's `torch.export`-based exporter, and the graph's signature.

The batch axis (when batched) and every `-1` dim become symbolic ONNX dims, so one
graph serves any batch size up to Triton's `max_batch_size`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import onnx
import torch

from modelcanary.errors import UsageError, VerificationError, one_line
from modelcanary.modelrepo.tensorspec import VARIABLE, Signature, TensorSpec, dtype_by_onnx

DEFAULT_OPSET = 18
# Triton 2.51 ships ONNX Runtime 1.19, which reads IR versions up to 10.
MAX_IR_VERSION = 10


def run_torch(
    model: torch.nn.Module, inputs: dict[str, np.ndarray]
) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Run the model on numpy inputs (in signature order); return its outputs as numpy and,
    when it returned a mapping (a dict, a Hugging Face `ModelOutput`), their keys in order."""
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in inputs.values()]
    try:
        with torch.inference_mode():
            result = model(*tensors)
    except Exception as exc:
        raise UsageError(
            f"the model failed on sample inputs of shapes "
            f"{[tuple(t.shape) for t in tensors]}: {one_line(exc)}"
        ) from None
    keys = tuple(str(k) for k in result) if isinstance(result, Mapping) else ()
    outputs = _flat_outputs(result)
    return [o.detach().cpu().numpy() for o in outputs], keys


def _flat_outputs(result: object) -> list[torch.Tensor]:
    """The outputs of one call as a list of tensors, or one line saying what is not one."""
    if isinstance(result, Mapping):
        named = [(repr(str(k)), v) for k, v in result.items()]
    elif isinstance(result, tuple | list):
        named = [(str(i), v) for i, v in enumerate(result)]
    else:
        named = [("0", result)]
    for name, value in named:
        if not isinstance(value, torch.Tensor):
            raise UsageError(
                f"the model's output {name} is a {type(value).__name__}; return a tensor, "
                "a tuple of tensors or a mapping of names to tensors (nothing nested)"
            )
    return [value for _, value in named]


class _TupleOutputs(torch.nn.Module):
    """The user's model with its mapping of outputs returned as a tuple in key order, so
    that the ONNX graph has one output per key."""

    def __init__(self, model: torch.nn.Module, keys: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.keys = tuple(keys)

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = self.model(*args)
        return tuple(result[key] for key in self.keys)


def with_tuple_outputs(model: torch.nn.Module, keys: Sequence[str]) -> torch.nn.Module:
    """The model as exported: unchanged, or wrapped when it returns a mapping."""
    return _TupleOutputs(model, keys).eval() if keys else model


def export_onnx(
    model: torch.nn.Module,
    inputs: Sequence[TensorSpec],
    output_names: Sequence[str],
    example: dict[str, np.ndarray],
    batched: bool,
    opset: int = DEFAULT_OPSET,
) -> onnx.ModelProto:
    """Export the model to an ONNX graph that passes `onnx.checker`'s full check."""
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[s.name])) for s in inputs)
    dynamic_shapes: tuple[object, ...] = _dynamic_shapes(inputs, batched)
    if isinstance(model, _TupleOutputs):  # its inputs are one *args tuple
        dynamic_shapes = (dynamic_shapes,)
    with _quiet():
        try:
            program = torch.onnx.export(
                model,
                args,
                dynamo=True,
                input_names=[s.name for s in inputs],
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                verbose=False,
                optimize=True,
            )
        except Exception as exc:
            raise UsageError(
                f"torch cannot export the model to ONNX: {_export_cause(exc)}"
            ) from None
    if program is None:  # only the legacy exporter returns None
        raise UsageError("torch returned no ONNX program")
    proto = program.model_proto
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    name_outputs(proto, output_names)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise VerificationError(
            f"onnx.checker rejects the exported graph: {one_line(exc)}"
        ) from None
    return proto


def name_outputs(proto: onnx.ModelProto, names: Sequence[str]) -> None:
    """Give the graph's outputs the requested names through Identity nodes.

    Done after export rather than by the exporter, which refuses names for outputs that
    are also used inside the graph (an embedding returned next to a score, say) or the
    same tensor returned twice.
    """
    graph = proto.graph
    if len(graph.output) != len(names):
        raise UsageError(
            f"{len(names)} --output name(s) given, but the graph has {len(graph.output)} output(s)"
        )
    taken = {v for node in graph.node for v in (*node.input, *node.output)}
    taken |= {v.name for v in graph.input} | {i.name for i in graph.initializer}
    for index, (value, name) in enumerate(zip(graph.output, names, strict=True)):
        if value.name == name:
            continue
        if name in taken:
            _rename_value(graph, name, f"{name}__internal")
        graph.node.append(
            onnx.helper.make_node(
                "Identity", [value.name], [name], name=f"modelcanary_output_{index}"
            )
        )
        value.name = name


def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename one value everywhere in a graph: node inputs and outputs, value_info, outputs."""
    for node in graph.node:
        node.input[:] = [new if v == old else v for v in node.input]
        node.output[:] = [new if v == old else v for v in node.output]
    for info in (*graph.value_info, *graph.output):
        if info.name == old:
            info.name = new


def _dynamic_shapes(
    inputs: Sequence[TensorSpec], batched: bool
) -> tuple[dict[int, torch.export.Dim], ...]:
    batch = torch.export.Dim("batch")
    shapes = []
    offset = 1 if batched else 0
    for spec in inputs:
        axes: dict[int, torch.export.Dim] = {0: batch} if batched else {}
        for index, dim in enumerate(spec.dims):
            if dim == VARIABLE:
                axes[index + offset] = torch.export.Dim(f"{_identifier(spec.name)}_{index}")
        shapes.append(axes)
    return tuple(shapes)


def _identifier(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def graph_signature(proto: onnx.ModelProto, batched: bool) -> Signature:
    """Read the signature from the graph: names, types and per-sample dims (-1 = symbolic)."""
    initializers = {i.name for i in proto.graph.initializer}
    graph_inputs = [v for v in proto.graph.input if v.name not in initializers]

    def specs(values: Sequence[onnx.ValueInfoProto], kind: str) -> tuple[TensorSpec, ...]:
        result = []
        for value in values:
            tensor_type = value.type.tensor_type
            shape = [
                d.dim_value if d.HasField("dim_value") else VARIABLE for d in tensor_type.shape.dim
            ]
            if batched:
                if not shape or shape[0] != VARIABLE:
                    raise UsageError(
                        f"{kind} {value.name!r} has shape {shape} in the exported graph: its first "
                        "axis is not the dynamic batch axis; export with --max-batch-size 0 "
                        "or make the model keep the batch axis"
                    )
                shape = shape[1:]
            result.append(
                TensorSpec(value.name, dtype_by_onnx(tensor_type.elem_type), tuple(shape))
            )
        return tuple(result)

    return Signature(
        inputs=specs(graph_inputs, "input"),
        outputs=specs(list(proto.graph.output), "output"),
        batched=batched,
    )


def check_inputs_kept(proto: onnx.ModelProto, inputs: Sequence[TensorSpec]) -> None:
    """Fail when the exporter dropped an input the model does not use."""
    kept = {v.name for v in proto.graph.input}
    for spec in inputs:
        if spec.name not in kept:
            raise UsageError(
                f"--input {spec.name!r} is not used by the model, so the exported graph has no "
                "such input; remove it"
            )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the exporter's progress lines, graph dumps and warnings off the terminal."""
    captured = io.StringIO()
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(captured),
            contextlib.redirect_stderr(captured),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export_cause(exc: BaseException) -> str:
    """The root cause of an export failure in one line."""
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return one_line(cause)
