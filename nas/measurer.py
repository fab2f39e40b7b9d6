"""Latency of a SubTransformer through the compile path a user ships (import -> LP-Fusion -> build).

``Measurer`` is the interface the latency dataset and the search call; ``LocalMeasurer`` times on
this CPU through the measurement core (``canao.measure``: warm-up, rounds with the reference
workload, the noise gate); ``nas.remote_measurer.RemoteMeasurer`` times on a device over TVM RPC
(``--rpc/--tracker``). A measurer with a ``close()`` holds a resource (an RPC session) that its
caller ends when done."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np


def trimmed(samples_ms: List[float], trim: float = 0.1) -> Dict[str, float]:
    """HAT's statistic: sort, drop the lowest and highest ``trim`` share, mean/std of the rest."""
    from canao.measure import robust_stats

    s = robust_stats(samples_ms, trim)
    return {"mean_ms": s["trimmed_mean_ms"], "std_ms": s["trimmed_std_ms"], "n": s["n"], "kept": s["trimmed_kept"]}


@dataclass
class Measurement:
    latency: Dict[str, float]                      # trimmed mean/std of whole-model runs + noise record
    kernel_ms: Dict[str, float] = field(default_factory=dict)   # kernel name -> ms per inference (all calls)
    kernel_calls: Dict[str, int] = field(default_factory=dict)  # kernel name -> calls per inference


class Measurer:
    """Times a compiled model; ``kernels=True`` also times each kernel call inside the model when
    ``times_kernels`` (a measurer that cannot, e.g. over RPC, returns empty kernel dicts)."""
    name = "abstract"
    times_kernels = True

    def measure(self, compiled, imported, inputs: Dict[str, np.ndarray], kernels: bool) -> Measurement:
        raise NotImplementedError


class LocalMeasurer(Measurer):
    """This CPU: ``warmup`` runs, then ``repeat`` timed rounds (HAT: trimmed mean) with the reference
    workload in the same rounds, through the noise gate; per-kernel times from the VM's instrument
    hook (before/after every call), median over ``kernel_repeat`` instrumented rounds.

    ``latency`` holds ``mean_ms``/``std_ms``/``n``/``kept`` plus the noise record of the
    measurement: ``ratio_to_reference`` (trimmed mean / reference median), ``reference_ms``,
    ``load_avg_1m``, ``tries``, ``flagged``. The first ``measure`` refuses to start while the load
    average says another heavy job runs (``canao.measure.assert_quiet_machine``) unless
    ``allow_busy`` (or CANAO_ALLOW_BUSY=1)."""
    name = "local"

    def __init__(self, warmup: int = 5, repeat: int = 30, kernel_repeat: int = 7, allow_busy: bool = False,
                 gate=None):
        self.warmup, self.repeat, self.kernel_repeat = warmup, repeat, kernel_repeat
        self.allow_busy, self.gate = allow_busy, gate
        self._checked = False

    def measure(self, compiled, imported, inputs, kernels: bool) -> Measurement:
        import tvm
        from tvm import relax

        from canao.measure import assert_quiet_machine, measure

        if not self._checked:
            assert_quiet_machine(self.allow_busy, what="latency measurement")
            self._checked = True
        dev = tvm.cpu()
        vm = relax.VirtualMachine(compiled.executable, dev)
        args = [tvm.runtime.tensor(np.ascontiguousarray(inputs[s.name]), dev) for s in imported.inputs]
        args += [tvm.runtime.tensor(p, dev) for p in compiled.params]
        fn = vm["main"]
        row = measure({"model": lambda: fn(*args)}, self.repeat, warmup=self.warmup, gate=self.gate)
        latency = trimmed(row.samples_ms["model"])
        noise = row.noise()
        ref = noise["reference_ms"]
        latency.update({"ratio_to_reference": latency["mean_ms"] / ref if ref else None, "reference_ms": ref,
                        "load_avg_1m": noise["load_avg_1m"], "tries": noise["tries"], "flagged": noise["flagged"]})
        result = Measurement(latency)
        if kernels:
            result.kernel_ms, result.kernel_calls = self._per_kernel(vm, args, compiled)
        return result

    def _per_kernel(self, vm, args, compiled):
        import time

        import tvm

        from canao.measure import measure_rounds

        names = {gv.name_hint for gv, f in compiled.mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
        state = {"t": 0.0, "cur": {}}

        def instrument(func, symbol, before, ret, *rest):
            if symbol in names:
                now = time.perf_counter()
                if before:
                    state["t"] = now
                else:
                    state["cur"][symbol] = state["cur"].get(symbol, 0.0) + (now - state["t"]) * 1e3
            return 0

        counter: Dict[str, int] = {}

        def count(func, symbol, before, ret, *rest):
            if symbol in names and before:
                counter[symbol] = counter.get(symbol, 0) + 1
            return 0

        vm.set_instrument(count)
        fn = vm["main"]
        fn(*args)
        calls = dict(counter)
        vm.set_instrument(instrument)
        kernel_names = sorted(calls)

        def one_round(_r):
            state["cur"] = {}
            fn(*args)
            return {k: state["cur"].get(k, 0.0) for k in kernel_names}

        # the first instrumented run is a warm-up; each round is one instrumented inference
        row = measure_rounds(one_round, kernel_names, self.kernel_repeat, warmup_round=lambda: one_round(-1),
                             gate=self.gate)
        per_kernel = {k: row.median_ms(k) or 0.0 for k in kernel_names}
        return per_kernel, calls


def compile_subnet(space, genes, target_spec, seq_len: int, options: Optional[dict] = None):
    """(imported, compiled, inputs) for ``genes`` through the canao pipeline (LP-Fusion + default schedules)."""
    from canao.codegen.build import build
    from canao.frontends import from_torch

    module = space.export_module(space.to_subnet(genes)).eval()
    inputs = space.example_inputs(seq_len, seed=0)
    imported = from_torch(module, inputs, name=f"{space.kind}-subnet")
    compiled = build(imported, target_spec, "canao", options=options or {"yellow": "default"})
    return imported, compiled, inputs
