"""The Python-based Triton backend named `onnxruntime` (`model.py`), copied into the
backend directory of a local Triton server; it never imports modelcanary."""

from pathlib import Path

MODEL_PY = Path(__file__).with_name("model.py")
