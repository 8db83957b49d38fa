"""Open Inference Protocol (KServe v2) JSON request bodies from numpy arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelcanary.modelrepo.tensorspec import dtype_by_numpy


def infer_body(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """`{"inputs": [...]}` with each array's shape, Triton datatype and flattened data."""
    return {
        "inputs": [
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": dtype_by_numpy(array.dtype.name).triton.removeprefix("TYPE_"),
                "data": array.ravel().tolist(),
            }
            for name, array in inputs.items()
        ]
    }
