"""PyTorch -> Relax through torch.export and tvm.relax.frontend.torch."""
from typing import Dict, List, Optional

import numpy as np

from ..errors import CanaoError
from .imported import ImportedModel, InputSpec, OutputSpec, Reference, default_output_names


def _unsupported_op(exc: Exception) -> Optional[str]:
    text = str(exc)
    for marker in ("Unsupported function types", "Unsupported function type", "not supported"):
        if marker in text:
            return text.split(marker, 1)[1].strip(" :[]'\"\n").split("\n")[0][:200]
    return None


def flatten_outputs(out) -> List[np.ndarray]:
    """The tensors of a module's output in torch.export's order (pytree: depth-first, dict keys in
    insertion order, ModelOutput fields in order) -- the order the Relax ``main`` returns them."""
    import torch
    from torch.utils import _pytree as pytree

    if hasattr(out, "to_tuple") and not isinstance(out, torch.Tensor):  # transformers ModelOutput
        out = dict(out.items())
    return [leaf.detach().numpy() if isinstance(leaf, torch.Tensor) else np.asarray(leaf)
            for leaf in pytree.tree_leaves(out)]


def output_names(program) -> List[str]:
    """A name per flattened output of an ExportedProgram: dict keys / attribute names joined by
    '.', positions as numbers; a bare tensor is ``output``, a bare tuple ``output_0`` ..."""
    from torch.utils import _pytree as pytree

    spec = program.call_spec.out_spec
    count = spec.num_leaves
    try:
        structure = pytree.tree_unflatten(list(range(count)), spec)
        paths = [path for path, _ in pytree.tree_flatten_with_path(structure)[0]]
    except Exception:  # an exotic container: positions are still a defined order
        return default_output_names(count)
    names = []
    for path in paths:
        parts = []
        for key in path:
            for attr in ("key", "name", "idx"):
                if hasattr(key, attr):
                    parts.append(str(getattr(key, attr)))
                    break
        if not parts:
            names.append("output")
        elif parts[0].isdigit():
            names.append("output_" + ".".join(parts))
        else:
            names.append(".".join(parts))
    if len(set(names)) != len(names):
        return default_output_names(count)
    return names


def _output_specs(program, names: List[str]) -> List[OutputSpec]:
    node = next(n for n in program.graph.nodes if n.op == "output")
    leaves = list(node.args[0]) if isinstance(node.args[0], (tuple, list)) else [node.args[0]]
    specs = []
    for name, leaf in zip(names, leaves[-len(names):] if names else []):
        val = leaf.meta.get("val") if hasattr(leaf, "meta") else leaf
        if hasattr(val, "shape") and hasattr(val, "dtype"):
            specs.append(OutputSpec(name, tuple(int(d) for d in val.shape), str(val.dtype).replace("torch.", "")))
        else:
            specs.append(OutputSpec(name, (), np.asarray(val).dtype.name))
    return specs


def from_torch(module, example_inputs: Dict[str, np.ndarray], name: str = "model", **extra) -> ImportedModel:
    """Export ``module(**example_inputs)`` with torch.export and import the graph into Relax.

    Weights stay function parameters (``keep_params_as_input``) so later passes can fold constants
    into them and lift weight transforms out of the hot path. Every output the module returns is
    kept: ``outputs`` names them, ``reference.outputs(inputs)`` computes them all.
    """
    import torch
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    names = list(example_inputs)
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(example_inputs[n])) for n in names)

    class _Positional(torch.nn.Module):
        """torch.export wants positional inputs in a fixed order; a ModelOutput becomes a plain dict."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            out = self.inner(**dict(zip(names, args)))
            if hasattr(out, "to_tuple") and not isinstance(out, torch.Tensor):
                out = {k: v for k, v in out.items() if v is not None}
            return out

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
    out_names = output_names(program)

    def run_all(inputs: Dict[str, np.ndarray]) -> List[np.ndarray]:
        with torch.no_grad():
            out = wrapped(*(torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in names))
        return flatten_outputs(out)

    specs = [InputSpec(n, tuple(example_inputs[n].shape), str(example_inputs[n].dtype)) for n in names]
    return ImportedModel(name=name, mod=mod, params=weights, inputs=specs, reference=Reference(run_all, out_names),
                         torch_module=wrapped, outputs=_output_specs(program, out_names), **extra)
