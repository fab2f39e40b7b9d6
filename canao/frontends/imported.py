"""What every frontend returns: one Relax module with weights as trailing parameters."""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

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


@dataclass(frozen=True)
class OutputSpec:
    """One output of the model, in the order the compiled ``main`` returns them (flattened)."""

    name: str
    shape: tuple
    dtype: str

    def to_json(self):
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, obj) -> "OutputSpec":
        return cls(obj["name"], tuple(obj["shape"]), obj["dtype"])


def default_output_names(count: int) -> List[str]:
    """Names for outputs that carry none: ``output`` alone, else ``output_0``, ``output_1`` ..."""
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


class Reference:
    """The source framework on the same inputs: every output, under its name.

    Calling it returns the *first* output (what callers that predate multi-output models expect);
    ``outputs(inputs)`` returns every output, in the compiled model's order, keyed by name.
    """

    def __init__(self, run_all: Callable[[Dict[str, np.ndarray]], Sequence[np.ndarray]], names: Sequence[str]):
        self._run_all = run_all
        self.names = list(names)

    def outputs(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        arrays = [np.asarray(a) for a in self._run_all(inputs)]
        if len(arrays) != len(self.names):
            from ..errors import CanaoError

            raise CanaoError(f"the reference returned {len(arrays)} outputs, the model declares {len(self.names)}",
                             "report the model: its outputs changed between import and check")
        return dict(zip(self.names, arrays))

    def __call__(self, inputs: Dict[str, np.ndarray]) -> np.ndarray:
        return next(iter(self.outputs(inputs).values()))


@dataclass
class ImportedModel:
    """A Relax ``main(inputs..., weights...)`` with ``num_input`` set, and the weights as numpy.

    ``reference`` runs the source framework (PyTorch or ONNX Runtime) on the same inputs: every
    compiled build is checked against it, output by output (``reference_outputs``). ``outputs``
    names every output of ``main`` in the order the VM returns them, flattened depth-first.
    """

    name: str
    mod: "object"  # tvm.IRModule
    params: List[np.ndarray]
    inputs: List[InputSpec]
    reference: Optional[Callable[[Dict[str, np.ndarray]], np.ndarray]] = None
    tokenizer_dir: Optional[str] = None
    torch_module: "object" = None  # the wrapped torch module, when the source is PyTorch
    source: dict = field(default_factory=dict)
    outputs: List[OutputSpec] = field(default_factory=list)
    vocab_size: Optional[int] = None  # bounds the synthetic token ids of example_inputs

    @property
    def output_names(self) -> List[str]:
        if self.outputs:
            return [o.name for o in self.outputs]
        return list(getattr(self.reference, "names", None) or default_output_names(1))

    def reference_outputs(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Every output of the source framework on ``inputs``, keyed by output name, in order."""
        if isinstance(self.reference, Reference):
            return self.reference.outputs(inputs)
        return {self.output_names[0]: np.asarray(self.reference(inputs))}  # a plain single-output callable

    def example_inputs(self, seed: int = 0) -> Dict[str, np.ndarray]:
        """Deterministic synthetic inputs: token ids in the vocab, a full mask, zero segments."""
        rng = np.random.default_rng(seed)
        high = min(self.vocab_size or 30000, 30000)
        low = min(1000, high // 2)
        out = {}
        for spec in self.inputs:
            if "mask" in spec.name:
                out[spec.name] = np.ones(spec.shape, dtype=spec.dtype)
            elif "type" in spec.name or "segment" in spec.name:
                out[spec.name] = np.zeros(spec.shape, dtype=spec.dtype)
            elif np.dtype(spec.dtype).kind in "iu":
                out[spec.name] = rng.integers(low, high, size=spec.shape).astype(spec.dtype)
            else:
                out[spec.name] = rng.standard_normal(spec.shape).astype(spec.dtype)
        return out
