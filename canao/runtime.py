"""Run a compiled model on this machine: from a CompiledModel in memory or an artifact folder."""
import platform
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from . import artifact
from .errors import CanaoError
from .frontends.imported import InputSpec, default_output_names


def flatten_vm_output(out) -> List[np.ndarray]:
    """The Relax VM's return value as a flat list of numpy arrays: tensors as they are, tuples
    (nested to any depth) depth-first left to right -- the order ``ImportedModel.outputs`` and the
    references use; shapes and scalars (non-tensor outputs) become numpy arrays too."""
    if hasattr(out, "numpy"):
        return [out.numpy()]
    if isinstance(out, (int, float, bool, np.generic)):
        return [np.asarray(out)]
    try:
        items = list(out)
    except TypeError as exc:
        raise CanaoError(f"the compiled model returned a {type(out).__name__}, which CANAO cannot read back",
                         "return tensors (or tuples of tensors) from the model") from exc
    if items and all(isinstance(i, (int, np.integer)) for i in items) and not isinstance(out, (list, tuple)):
        return [np.asarray(items, dtype="int64")]  # a ShapeTuple returned as a value
    flat = []
    for item in items:
        flat.extend(flatten_vm_output(item))
    return flat


class LocalModel:
    """A Relax VM with the weights already on the device.

    ``run(inputs)`` returns the first output (numpy); ``run_all(inputs)`` every output as a
    ``{name: array}`` dict in the model's output order.
    """

    def __init__(self, executable, params: List[np.ndarray], inputs: List[InputSpec],
                 output_names: Optional[List[str]] = None):
        import tvm
        from tvm import relax

        self.dev = tvm.cpu()
        self.vm = relax.VirtualMachine(executable, self.dev)
        self.inputs = inputs
        self.output_names = list(output_names) if output_names else None
        self._params = [tvm.runtime.tensor(p, self.dev) for p in params]
        self._fn = self.vm["main"]

    @classmethod
    def from_compiled(cls, compiled, inputs: List[InputSpec], output_names: Optional[List[str]] = None) -> "LocalModel":
        if not compiled.target.runs_locally:
            raise CanaoError(f"a build for {compiled.target.name} cannot run on this {platform.machine()} machine",
                             "run it on the device: canao deploy OUT/ --rpc HOST:PORT")
        return cls(compiled.executable, compiled.params, inputs, output_names)

    @classmethod
    def from_dir(cls, out_dir) -> "LocalModel":
        import tvm

        manifest = artifact.read_manifest(out_dir)
        arch = manifest["target"].get("arch")
        if arch != platform.machine():
            raise CanaoError(f"{out_dir} was compiled for {arch}, this machine is {platform.machine()}",
                             "run it on the device with `canao deploy`, or recompile with --target x86")
        lib_path = Path(out_dir) / "lib.so"
        if not lib_path.is_file():
            raise CanaoError(f"{out_dir} has no lib.so", f"recompile it: canao compile {manifest.get('model', 'MODEL')} -o {out_dir} --force")
        params = artifact.load_params(out_dir)  # before the library: its errors are the clearer ones
        from .atomic import quiet_native_stderr

        try:
            with quiet_native_stderr():
                lib = tvm.runtime.load_module(str(lib_path))
        except Exception as exc:
            raise CanaoError(f"{lib_path} cannot be loaded ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})",
                             f"recompile it: canao compile {manifest.get('model', 'MODEL')} -o {out_dir} --force") from exc
        specs = [InputSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in manifest["inputs"]]
        names = [o["name"] for o in manifest.get("outputs") or []] or None
        return cls(lib, params, specs, names)

    def _args(self, inputs: Dict[str, np.ndarray]):
        import tvm

        missing = [s.name for s in self.inputs if s.name not in inputs]
        if missing:
            raise CanaoError(f"missing input(s) {', '.join(missing)}",
                             f"the model takes {', '.join(s.name for s in self.inputs)}")
        return [tvm.runtime.tensor(s.check(np.asarray(inputs[s.name])), self.dev) for s in self.inputs]

    def run_list(self, inputs: Dict[str, np.ndarray]) -> List[np.ndarray]:
        """Every output, flattened in the defined order (see ``flatten_vm_output``)."""
        return flatten_vm_output(self._fn(*self._args(inputs), *self._params))

    def run_all(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Every output under its name (the manifest's / ImportedModel's output names)."""
        arrays = self.run_list(inputs)
        names = self.output_names or default_output_names(len(arrays))
        if len(names) != len(arrays):
            raise CanaoError(f"the compiled model returned {len(arrays)} outputs, its manifest names {len(names)}",
                             "recompile the artifact with this version of canao")
        return dict(zip(names, arrays))

    def run(self, inputs: Dict[str, np.ndarray]) -> np.ndarray:
        """The first output (use ``run_all`` for every output)."""
        return self.run_list(inputs)[0]

    def runner(self, inputs: Dict[str, np.ndarray]):
        """A zero-argument callable running one inference with inputs already on the device."""
        args = self._args(inputs) + self._params
        fn = self._fn
        return lambda: fn(*args)
