"""A model module whose import fails the way transformers fails without an optional
dependency: a ModuleNotFoundError that names no module."""

raise ModuleNotFoundError("BertTokenizer requires the tokenizers library; pip install tokenizers")
