"""Compile a SubTransformer like any other model (torch.export -> Relax -> canao pipeline -> build)
and compare its output with PyTorch's."""
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np


@dataclass
class CheckResult:
    built: bool
    ran: bool
    max_abs_err: Optional[float]
    ref_scale: Optional[float]
    build_seconds: float
    kernels: int
    note: str = ""

    @property
    def ok(self) -> bool:
        """Built, and (when it ran) within 1e-4 of PyTorch relative to the output's magnitude."""
        if not self.ran:
            return self.built
        return self.max_abs_err is not None and self.max_abs_err <= 1e-4 * max(1.0, self.ref_scale)

    def to_json(self):
        return {"built": self.built, "ran": self.ran, "max_abs_err": self.max_abs_err, "ref_scale": self.ref_scale,
                "build_seconds": round(self.build_seconds, 2), "kernels": self.kernels, "ok": self.ok,
                "note": self.note}


def run_vm(compiled, inputs: List[np.ndarray]):
    """Run ``main(inputs..., params...)`` on the local CPU; returns numpy (or a list for tuples)."""
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    vm = relax.VirtualMachine(compiled.executable, dev)
    args = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in inputs]
    params = [tvm.runtime.tensor(p, dev) for p in compiled.params]
    return _to_numpy(vm["main"](*args, *params))


def _to_numpy(out):
    if hasattr(out, "numpy"):
        return out.numpy()
    return [_to_numpy(o) for o in out]


def check_subnet(space, genes, target_spec, seq_len: int = 16, seed: int = 0, pipeline: str = "canao",
                 options: Optional[dict] = None) -> CheckResult:
    """Materialize ``genes``, import, build for ``target_spec`` and, if it runs here, compare."""
    from canao.codegen.build import build
    from canao.frontends import from_torch

    module = space.export_module(space.to_subnet(genes)).eval()
    inputs: Dict[str, np.ndarray] = space.example_inputs(seq_len, seed=seed)
    imported = from_torch(module, inputs, name=f"{space.kind}-subnet")
    start = time.perf_counter()
    compiled = build(imported, target_spec, pipeline=pipeline, options=options)
    seconds = time.perf_counter() - start
    if not target_spec.runs_locally:
        return CheckResult(True, False, None, None, seconds, compiled.kernels,
                           f"built only: {target_spec.name} does not run on this machine")
    got = run_vm(compiled, [inputs[s.name] for s in imported.inputs])
    ref = imported.reference(inputs)
    err = float(np.abs(np.asarray(got) - ref).max())
    return CheckResult(True, True, err, float(np.abs(ref).max()), seconds, compiled.kernels)
