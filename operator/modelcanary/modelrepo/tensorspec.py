"""Tensor signatures: the `NAME:DTYPE:DIMS` syntax and the data type table.

Pure: no torch, no I/O. One table maps each data type across the four type systems a
model crosses on its way to Triton (our CLI name, numpy, ONNX, Triton's `TYPE_*`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelcanary.errors import UsageError

VARIABLE = -1


@dataclass(frozen=True)
class DType:
    """One data type in every type system it crosses."""

    name: str  # as written on the command line
    numpy: str  # numpy dtype string
    onnx: int  # onnx.TensorProto data type number
    triton: str  # inference.DataType name in model_config.proto


# onnx.TensorProto: FLOAT=1 UINT8=2 INT8=3 INT16=5 INT32=6 INT64=7 BOOL=9 FLOAT16=10 DOUBLE=11
DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        DType("fp16", "float16", 10, "TYPE_FP16"),
        DType("fp32", "float32", 1, "TYPE_FP32"),
        DType("fp64", "float64", 11, "TYPE_FP64"),
        DType("int8", "int8", 3, "TYPE_INT8"),
        DType("int16", "int16", 5, "TYPE_INT16"),
        DType("int32", "int32", 6, "TYPE_INT32"),
        DType("int64", "int64", 7, "TYPE_INT64"),
        DType("uint8", "uint8", 2, "TYPE_UINT8"),
        DType("bool", "bool", 9, "TYPE_BOOL"),
    )
}
_BY_ONNX = {d.onnx: d for d in DTYPES.values()}
_BY_TRITON = {d.triton: d for d in DTYPES.values()}
_BY_NUMPY = {d.numpy: d for d in DTYPES.values()}

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor with a data type and per-sample dims (no batch axis; -1 = variable)."""

    name: str
    dtype: DType
    dims: tuple[int, ...]

    def describe(self) -> str:
        """The spec in the command-line syntax, e.g. `IMAGE:fp32:1x8x8`."""
        return f"{self.name}:{self.dtype.name}:{format_dims(self.dims)}"


def format_dims(dims: tuple[int, ...]) -> str:
    """Dims in the `AxBxC` syntax, `[]` for a scalar per sample."""
    return "x".join(str(d) for d in dims) if dims else "[]"


def dtype_by_name(name: str) -> DType:
    """Look a data type up by its command-line name, with the valid names in the error."""
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise UsageError(f"unknown dtype {name!r}; use one of: {', '.join(DTYPES)}") from None


def dtype_by_onnx(elem_type: int) -> DType:
    """The data type of an ONNX tensor element type number."""
    try:
        return _BY_ONNX[elem_type]
    except KeyError:
        raise UsageError(
            f"ONNX element type {elem_type} is not supported by modelcanary "
            f"(supported: {', '.join(DTYPES)})"
        ) from None


def dtype_by_triton(triton_name: str) -> DType:
    """The data type of a Triton `TYPE_*` name."""
    try:
        return _BY_TRITON[triton_name]
    except KeyError:
        raise UsageError(f"Triton data type {triton_name} is not supported") from None


def dtype_by_numpy(numpy_name: str) -> DType:
    """The data type of a numpy dtype string such as `float32`."""
    try:
        return _BY_NUMPY[numpy_name]
    except KeyError:
        raise UsageError(f"numpy dtype {numpy_name} is not supported") from None


def check_tensor_name(name: str, what: str) -> str:
    """Return the name if Triton and ONNX can both carry it, else raise naming the flag."""
    if not _NAME_RE.match(name):
        raise UsageError(
            f"{what} name {name!r} is not valid: use letters, digits, '_', '.', '-' "
            "and start with a letter or '_'"
        )
    return name


def parse_dims(text: str, where: str) -> tuple[int, ...]:
    """Parse `64`, `1x8x8` or `-1x16` into dims; every dim is a positive integer or -1."""
    if not text:
        raise UsageError(f"{where}: DIMS is empty; write e.g. 64 or 1x8x8")
    dims: list[int] = []
    for part in text.lower().split("x"):
        try:
            value = int(part)
        except ValueError:
            raise UsageError(
                f"{where}: DIMS {text!r} is not valid; write positive integers or -1 "
                "joined by 'x', e.g. 64 or 1x8x8 or -1x16"
            ) from None
        if value == 0 or value < VARIABLE:
            raise UsageError(
                f"{where}: dim {value} in {text!r} is not valid; use a positive size or -1"
            )
        dims.append(value)
    return tuple(dims)


def parse_input_spec(text: str) -> TensorSpec:
    """Parse one `--input NAME:DTYPE:DIMS` value."""
    parts = text.split(":")
    if len(parts) != 3:
        raise UsageError(
            f"--input {text!r} is not NAME:DTYPE:DIMS (e.g. INPUT__0:fp32:64 or IMAGE:fp32:1x8x8)"
        )
    name, dtype, dims = parts
    where = f"--input {text}"
    return TensorSpec(
        check_tensor_name(name, "--input"), dtype_by_name(dtype), parse_dims(dims, where)
    )


def check_unique(specs: list[str], flag: str) -> None:
    """Fail when a tensor name is given twice."""
    seen: set[str] = set()
    for name in specs:
        if name in seen:
            raise UsageError(f"{flag} name {name!r} is given more than once")
        seen.add(name)


def _batching(batched: bool) -> str:
    return "batched (max_batch_size > 0)" if batched else "not batched (max_batch_size 0)"


@dataclass(frozen=True)
class Signature:
    """What a client sees of a model: its inputs, outputs and whether it is batched."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batched: bool

    def describe(self) -> str:
        """`A:fp32:64, B:int64:4 -> C:fp32:10` for one-line summaries."""
        ins = ", ".join(s.describe() for s in self.inputs)
        outs = ", ".join(s.describe() for s in self.outputs)
        return f"{ins} -> {outs}"

    def differences(
        self, other: Signature, mine: str = "this export", theirs: str = "the existing config"
    ) -> list[str]:
        """Human-readable differences from `other` (empty when the two are the same)."""
        problems: list[str] = []
        if self.batched != other.batched:
            problems.append(
                f"batching: {_batching(other.batched)} in {theirs}, "
                f"{_batching(self.batched)} in {mine}"
            )
        for kind, new, old in (
            ("input", self.inputs, other.inputs),
            ("output", self.outputs, other.outputs),
        ):
            new_names, old_names = [t.name for t in new], [t.name for t in old]
            if new_names != old_names:
                problems.append(f"{kind}s: {old_names} in {theirs}, {new_names} in {mine}")
                continue
            for a, b in zip(new, old, strict=True):
                if a.dtype != b.dtype:
                    problems.append(
                        f"{kind} {a.name!r}: dtype {b.dtype.name} in {theirs}, "
                        f"{a.dtype.name} in {mine}"
                    )
                if a.dims != b.dims:
                    problems.append(
                        f"{kind} {a.name!r}: dims {format_dims(b.dims)} in {theirs}, "
                        f"{format_dims(a.dims)} in {mine}"
                    )
        return problems
