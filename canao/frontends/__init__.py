"""Import: a model source (zoo name, Hugging Face folder, ONNX file) -> a Relax IRModule + params."""
from .imported import ImportedModel, InputSpec
from .loader import load_model
from .onnx_import import from_onnx
from .torch_import import from_torch

__all__ = ["ImportedModel", "InputSpec", "load_model", "from_onnx", "from_torch"]
