"""The NAME:DTYPE:DIMS syntax and the data type table."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from modelcanary.errors import UsageError
from modelcanary.modelrepo.tensorspec import DTYPES, parse_dims, parse_input_spec


@pytest.mark.parametrize(
    ("text", "name", "dtype", "dims"),
    [
        ("INPUT__0:fp32:64", "INPUT__0", "fp32", (64,)),
        ("IMAGE:fp32:1x8x8", "IMAGE", "fp32", (1, 8, 8)),
        ("tokens:int64:-1", "tokens", "int64", (-1,)),
        ("x.1:FP16:3X-1", "x.1", "fp16", (3, -1)),
        ("mask:bool:4", "mask", "bool", (4,)),
    ],
)
def test_valid_specs(text: str, name: str, dtype: str, dims: tuple[int, ...]) -> None:
    spec = parse_input_spec(text)
    assert (spec.name, spec.dtype.name, spec.dims) == (name, dtype, dims)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("INPUT__0:fp32", "is not NAME:DTYPE:DIMS"),
        ("INPUT__0:fp32:64:1", "is not NAME:DTYPE:DIMS"),
        ("INPUT__0:float42:64", "unknown dtype 'float42'; use one of: fp16, fp32"),
        ("INPUT__0:fp32:8by8", "DIMS '8by8' is not valid"),
        ("INPUT__0:fp32:0", "dim 0 in '0' is not valid"),
        ("INPUT__0:fp32:-2", "dim -2 in '-2' is not valid"),
        ("INPUT__0:fp32:", "DIMS is empty"),
        ("9lives:fp32:4", "--input name '9lives' is not valid"),
        ("a b:fp32:4", "--input name 'a b' is not valid"),
    ],
)
def test_invalid_specs_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_input_spec(text)
    assert message in str(error.value)


def test_dims_are_positive_or_variable() -> None:
    assert parse_dims("2x-1x3", "here") == (2, -1, 3)


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=lambda d: d.name)
def test_dtype_table_agrees_with_numpy_onnx_and_triton(dtype) -> None:  # type: ignore[no-untyped-def]
    assert onnx.helper.tensor_dtype_to_np_dtype(dtype.onnx) == np.dtype(dtype.numpy)
    assert mc.DataType.Value(dtype.triton) > 0
