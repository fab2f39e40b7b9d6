"""PyTorch -> Relax through torch.export and tvm.relax.frontend.torch."""
from typing import Dict, Optional

import numpy as np

from ..errors import CanaoError
from .imported import ImportedModel, InputSpec


def _unsupported_op(exc: Exception) -> Optional[str]:
    text = str(exc)
    for marker in ("Unsupported function types", "Unsupported function type", "not supported"):
        if marker in text:
            return text.split(marker, 1)[1].strip(" :[]'\"\n").split("\n")[0][:200]
    return None


def from_torch(module, example_inputs: Dict[str, np.ndarray], name: str = "model", **extra) -> ImportedModel:
    """Export ``module(**example_inputs)`` with torch.export and import the graph into Relax.

    Weights stay function parameters (``keep_params_as_input``) so later passes can fold constants
    into them and lift weight transforms out of the hot path.
    """
    import torch
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    names = list(example_inputs)
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(example_inputs[n])) for n in names)

    class _Positional(torch.nn.Module):
        """torch.export wants positional inputs in a fixed order."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(names, args)))

    wrapped = _Positional(module).eval()
    try:
        with torch.no_grad():
            program = torch.export.export(wrapped, tensors)
    except Exception as exc:  # torch's messages are long; keep the first line
        raise CanaoError(f"torch.export failed for {name}: {str(exc).splitlines()[0][:300]}",
                         "make the model traceable (no data-dependent control flow) or export it to ONNX") from exc
    try:
        mod = from_exported_program(program, keep_params_as_input=True, unwrap_unit_return_tuple=True)
    except Exception as exc:
        op = _unsupported_op(exc)
        cause = f"the Relax PyTorch importer cannot handle operator {op}" if op else f"Relax import failed: {str(exc).splitlines()[0][:300]}"
        raise CanaoError(cause, "replace that operator in the model, or export to ONNX and pass the .onnx file") from exc
    mod, params = relax.frontend.detach_params(mod)
    weights = [p.numpy() for p in params["main"]]

    def reference(inputs: Dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            out = wrapped(*(torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in names))
        return _first_tensor(out).detach().numpy()

    specs = [InputSpec(n, tuple(example_inputs[n].shape), str(example_inputs[n].dtype)) for n in names]
    return ImportedModel(name=name, mod=mod, params=weights, inputs=specs, reference=reference,
                         torch_module=wrapped, **extra)


def _first_tensor(out):
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    if isinstance(out, (tuple, list)):
        return _first_tensor(out[0])
    return out
