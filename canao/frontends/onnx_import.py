"""ONNX -> Relax through tvm.relax.frontend.onnx; ONNX Runtime is the numerical reference."""
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..errors import CanaoError
from .imported import ImportedModel, InputSpec

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

    def reference(inputs: Dict[str, np.ndarray]) -> np.ndarray:
        import onnxruntime as ort

        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return sess.run(None, {s.name: inputs[s.name] for s in specs})[0]

    return ImportedModel(name=name or Path(path).stem, mod=mod, params=weights, inputs=specs,
                         reference=reference, source={"kind": "onnx", "path": str(path)})


def _unsupported_ops(model) -> set:
    """Op types in the graph that the Relax ONNX frontend has no converter for."""
    from tvm.relax.frontend.onnx import onnx_frontend

    table = onnx_frontend._get_convert_map()
    return {node.op_type for node in model.graph.node if node.op_type not in table}
