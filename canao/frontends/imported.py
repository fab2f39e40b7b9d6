"""What every frontend returns: one Relax module with weights as trailing parameters."""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple
    dtype: str

    def to_json(self):
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    def check(self, array: np.ndarray) -> np.ndarray:
        """Return ``array`` as this input, or raise a one-line error naming the mismatch."""
        from ..errors import CanaoError

        if tuple(array.shape) != tuple(self.shape):
            raise CanaoError(
                f"input '{self.name}' has shape {tuple(array.shape)}, the model was compiled for {tuple(self.shape)}",
                "pass an array of that shape, or recompile with matching --seq-len/--batch",
            )
        if np.dtype(array.dtype).kind != np.dtype(self.dtype).kind:
            raise CanaoError(
                f"input '{self.name}' has dtype {array.dtype}, the model expects {self.dtype}",
                f"convert it with .astype('{self.dtype}')",
            )
        return np.ascontiguousarray(array.astype(self.dtype, copy=False))


@dataclass
class ImportedModel:
    """A Relax ``main(inputs..., weights...)`` with ``num_input`` set, and the weights as numpy.

    ``reference`` runs the source framework (PyTorch or ONNX Runtime) on the same inputs: every
    compiled build is checked against it.
    """

    name: str
    mod: "object"  # tvm.IRModule
    params: List[np.ndarray]
    inputs: List[InputSpec]
    reference: Optional[Callable[[Dict[str, np.ndarray]], np.ndarray]] = None
    tokenizer_dir: Optional[str] = None
    torch_module: "object" = None  # the wrapped torch module, when the source is PyTorch
    source: dict = field(default_factory=dict)

    def example_inputs(self, seed: int = 0) -> Dict[str, np.ndarray]:
        """Deterministic synthetic inputs: token ids in the vocab, a full mask, zero segments."""
        rng = np.random.default_rng(seed)
        out = {}
        for spec in self.inputs:
            if "mask" in spec.name:
                out[spec.name] = np.ones(spec.shape, dtype=spec.dtype)
            elif "type" in spec.name or "segment" in spec.name:
                out[spec.name] = np.zeros(spec.shape, dtype=spec.dtype)
            elif np.dtype(spec.dtype).kind in "iu":
                out[spec.name] = rng.integers(1000, 30000, size=spec.shape).astype(spec.dtype)
            else:
                out[spec.name] = rng.standard_normal(spec.shape).astype(spec.dtype)
        return out
