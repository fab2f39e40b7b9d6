"""ONNX -> Relax through tvm.relax.frontend.onnx; ONNX Runtime is the numerical reference."""
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..errors import CanaoError
from .imported import ImportedModel, InputSpec, OutputSpec, Reference

_ONNX_DTYPES = {1: "float32", 6: "int32", 7: "int64", 10: "float16", 11: "float64", 9: "bool"}


def _load_checked(path: str):
    import onnx

    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as exc:
        raise CanaoError(f"{path} is not a valid ONNX model ({str(exc).splitlines()[0][:200]})",
                         "re-export it, e.g. torch.onnx.export(..., dynamo=True, opset_version=18)") from exc
    return model


def from_onnx(path: str, seq_len: int = 128, batch: int = 1, name: Optional[str] = None) -> ImportedModel:
    """Import an ONNX file with its dynamic dims fixed to (batch, seq_len)."""
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx as relax_from_onnx

    model = _load_checked(path)
    initializers = {i.name for i in model.graph.initializer}
    specs, shape_dict = [], {}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        tt = inp.type.tensor_type
        dims = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(d.dim_value)
            else:
                dims.append(batch if i == 0 else seq_len)
        dtype = _ONNX_DTYPES.get(tt.elem_type)
        if dtype is None:
            raise CanaoError(f"ONNX input '{inp.name}' has element type {tt.elem_type}, which CANAO does not handle",
                             "export the model with float32 / int64 inputs")
        specs.append(InputSpec(inp.name, tuple(dims), dtype))
        shape_dict[inp.name] = dims
    unsupported = _unsupported_ops(model)
    if unsupported:
        raise CanaoError(f"the Relax ONNX importer cannot handle operator(s) {', '.join(sorted(unsupported))}",
                         "replace them in the exporter, or export from PyTorch with dynamo=True, opset 18")
    try:
        mod = relax_from_onnx(model, shape_dict=shape_dict, keep_params_in_input=True)
    except Exception as exc:
        raise CanaoError(f"Relax ONNX import failed: {str(exc).splitlines()[0][:300]}",
                         "re-export with torch.onnx.export(..., dynamo=True, opset_version=18)") from exc
    mod, params = relax.frontend.detach_params(mod)
    weights = [p.numpy() for p in params.get("main", [])]

    out_names = [o.name for o in model.graph.output]
    session = {}

    def run_all(inputs: Dict[str, np.ndarray]):
        import onnxruntime as ort

        if "s" not in session:  # one session per import, built on first use
            session["s"] = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return session["s"].run(out_names, {s.name: inputs[s.name] for s in specs})

    return ImportedModel(name=name or Path(path).stem, mod=mod, params=weights, inputs=specs,
                         reference=Reference(run_all, out_names), source={"kind": "onnx", "path": str(path)},
                         outputs=_output_specs(model, mod, out_names))


def _output_specs(model, mod, names) -> list:
    """Name, shape and dtype of every graph output, in order: shapes and dtypes from the imported
    Relax ``main``'s return type (fixed at (batch, seq_len)), -1 where it is not static."""
    import tvm
    from tvm import relax

    def leaves(ty):
        if isinstance(ty, relax.TupleType):
            return [leaf for field in ty.fields for leaf in leaves(field)]
        return [ty]

    infos = leaves(mod["main"].ret_ty)
    if len(infos) != len(names):
        raise CanaoError(f"the Relax ONNX importer returned {len(infos)} outputs for the graph's {len(names)}",
                         "report the model; export it with one tensor per output")
    declared = {o.name: _ONNX_DTYPES.get(o.type.tensor_type.elem_type) for o in model.graph.output}
    specs = []
    for name, info in zip(names, infos):
        shape, dtype = (), declared.get(name) or "float32"
        if isinstance(info, relax.TensorType):
            dtype = str(info.dtype) or dtype
            if isinstance(info.shape, relax.ShapeExpr):
                shape = tuple(int(v) if isinstance(v, tvm.ir.prim.IntImm) else -1 for v in info.shape.values)
        specs.append(OutputSpec(name, shape, dtype))
    return specs


def _unsupported_ops(model) -> set:
    """Op types in the graph that the Relax ONNX frontend has no converter for."""
    from tvm.relax.frontend.onnx import onnx_frontend

    table = onnx_frontend._get_convert_map()
    return {node.op_type for node in model.graph.node if node.op_type not in table}
