"""Latency of a SubTransformer through the compile path a user ships (import -> LP-Fusion -> build).

``Measurer`` is the interface the latency dataset and the search call; ``LocalMeasurer`` times on
this CPU. A ``--rpc/--tracker`` measurer (canao.android_runner) implements the same two methods."""
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np


def trimmed(samples_ms: List[float], trim: float = 0.1) -> Dict[str, float]:
    """HAT's statistic: sort, drop the lowest and highest ``trim`` share, mean/std of the rest."""
    xs = np.sort(np.asarray(samples_ms, dtype=np.float64))
    k = int(len(xs) * trim)
    kept = xs[k:len(xs) - k] if len(xs) - 2 * k > 0 else xs
    return {"mean_ms": float(kept.mean()), "std_ms": float(kept.std()), "n": int(len(xs)), "kept": int(len(kept))}


@dataclass
class Measurement:
    latency: Dict[str, float]                      # trimmed mean/std of whole-model runs
    kernel_ms: Dict[str, float] = field(default_factory=dict)   # kernel name -> ms per inference (all calls)
    kernel_calls: Dict[str, int] = field(default_factory=dict)  # kernel name -> calls per inference


class Measurer:
    """Times a compiled model; ``kernels=True`` also times each kernel call inside the model."""
    name = "abstract"

    def measure(self, compiled, imported, inputs: Dict[str, np.ndarray], kernels: bool) -> Measurement:
        raise NotImplementedError


class LocalMeasurer(Measurer):
    """This CPU: ``warmup`` runs, then ``repeat`` timed runs (HAT: trimmed mean); per-kernel times from
    the VM's instrument hook (before/after every call), median over ``kernel_repeat`` runs."""
    name = "local"

    def __init__(self, warmup: int = 5, repeat: int = 30, kernel_repeat: int = 7):
        self.warmup, self.repeat, self.kernel_repeat = warmup, repeat, kernel_repeat

    def measure(self, compiled, imported, inputs, kernels: bool) -> Measurement:
        import tvm
        from tvm import relax

        dev = tvm.cpu()
        vm = relax.VirtualMachine(compiled.executable, dev)
        args = [tvm.runtime.tensor(np.ascontiguousarray(inputs[s.name]), dev) for s in imported.inputs]
        args += [tvm.runtime.tensor(p, dev) for p in compiled.params]
        fn = vm["main"]
        for _ in range(self.warmup):
            fn(*args)
        samples = []
        for _ in range(self.repeat):
            t0 = time.perf_counter()
            fn(*args)
            samples.append((time.perf_counter() - t0) * 1e3)
        result = Measurement(trimmed(samples))
        if kernels:
            result.kernel_ms, result.kernel_calls = self._per_kernel(vm, args, compiled)
        return result

    def _per_kernel(self, vm, args, compiled):
        import tvm

        names = {gv.name_hint for gv, f in compiled.mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
        runs: List[Dict[str, float]] = []
        calls: Dict[str, int] = {}
        state = {"t": 0.0, "cur": {}}

        def instrument(func, symbol, before, ret, *rest):
            if symbol in names:
                now = time.perf_counter()
                if before:
                    state["t"] = now
                else:
                    state["cur"][symbol] = state["cur"].get(symbol, 0.0) + (now - state["t"]) * 1e3
            return 0

        vm.set_instrument(instrument)
        fn = vm["main"]
        for i in range(self.kernel_repeat + 1):
            state["cur"] = {}
            fn(*args)
            if i:  # the first instrumented run is a warm-up
                runs.append(state["cur"])
        counter: Dict[str, int] = {}

        def count(func, symbol, before, ret, *rest):
            if symbol in names and before:
                counter[symbol] = counter.get(symbol, 0) + 1
            return 0

        vm.set_instrument(count)
        fn(*args)
        calls.update(counter)
        per_kernel = {k: float(np.median([r.get(k, 0.0) for r in runs])) for k in calls}
        return per_kernel, calls


def compile_subnet(space, genes, target_spec, seq_len: int, options: Optional[dict] = None):
    """(imported, compiled, inputs) for ``genes`` through the canao pipeline (LP-Fusion + default schedules)."""
    from canao.codegen.build import build
    from canao.frontends import from_torch

    module = space.export_module(space.to_subnet(genes)).eval()
    inputs = space.example_inputs(seq_len, seed=0)
    imported = from_torch(module, inputs, name=f"{space.kind}-subnet")
    compiled = build(imported, target_spec, "canao", options=dict(options or {"yellow": "default"}))
    return imported, compiled, inputs
