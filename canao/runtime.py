"""Run a compiled model on this machine: from a CompiledModel in memory or an artifact folder."""
import platform
from pathlib import Path
from typing import Dict, List

import numpy as np

from . import artifact
from .errors import CanaoError
from .frontends.imported import InputSpec


class LocalModel:
    """A Relax VM with the weights already on the device; ``run(inputs) -> numpy``."""

    def __init__(self, executable, params: List[np.ndarray], inputs: List[InputSpec]):
        import tvm
        from tvm import relax

        self.dev = tvm.cpu()
        self.vm = relax.VirtualMachine(executable, self.dev)
        self.inputs = inputs
        self._params = [tvm.runtime.tensor(p, self.dev) for p in params]
        self._fn = self.vm["main"]

    @classmethod
    def from_compiled(cls, compiled, inputs: List[InputSpec]) -> "LocalModel":
        if not compiled.target.runs_locally:
            raise CanaoError(f"a build for {compiled.target.name} cannot run on this {platform.machine()} machine",
                             "run it on the device: canao deploy OUT/ --rpc HOST:PORT")
        return cls(compiled.executable, compiled.params, inputs)

    @classmethod
    def from_dir(cls, out_dir) -> "LocalModel":
        import tvm

        manifest = artifact.read_manifest(out_dir)
        arch = manifest["target"].get("arch")
        if arch != platform.machine():
            raise CanaoError(f"{out_dir} was compiled for {arch}, this machine is {platform.machine()}",
                             "run it on the device with `canao deploy`, or recompile with --target x86")
        from .atomic import quiet_native_stderr

        with quiet_native_stderr():
            lib = tvm.runtime.load_module(str(Path(out_dir) / "lib.so"))
        specs = [InputSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in manifest["inputs"]]
        return cls(lib, artifact.load_params(out_dir), specs)

    def _args(self, inputs: Dict[str, np.ndarray]):
        import tvm

        missing = [s.name for s in self.inputs if s.name not in inputs]
        if missing:
            raise CanaoError(f"missing input(s) {', '.join(missing)}",
                             f"the model takes {', '.join(s.name for s in self.inputs)}")
        return [tvm.runtime.tensor(s.check(np.asarray(inputs[s.name])), self.dev) for s in self.inputs]

    def run(self, inputs: Dict[str, np.ndarray]) -> np.ndarray:
        out = self._fn(*self._args(inputs), *self._params)
        return out.numpy() if hasattr(out, "numpy") else out[0].numpy()

    def runner(self, inputs: Dict[str, np.ndarray]):
        """A zero-argument callable running one inference with inputs already on the device."""
        args = self._args(inputs) + self._params
        fn = self._fn
        return lambda: fn(*args)
