"""The ``tvm.transform.Pass`` wrapper, so the engine drops into any Relax pipeline."""
from typing import Optional, Sequence

from .egraph import FAMILIES, Limits
from .records import RewriteLog
from .transform import simplify_function


def PolynomialSimplify(log: Optional[RewriteLog] = None, families: Optional[Sequence[str]] = None,
                       limits: Optional[Limits] = None, functions: Optional[Sequence[str]] = None,
                       finite_weights: bool = True):
    """Module pass: simplify every Relax function's element-wise DAGs (run it before legalization).

    ``log`` receives one ``RewriteRecord`` per rewritten DAG; ``families`` restricts the rule
    families (names in ``FAMILIES``; default all); ``limits`` bounds saturation; ``functions``
    restricts which functions are visited (default: every Relax function).

    ``finite_weights``: the weight params (after ``num_input``) hold no +-inf or NaN, so rules guarded
    by finiteness (e.g. distributing a LayerNorm/NoNorm weight over a sum) may use it. This is the one
    precondition the pass cannot prove from the IR; it is checkable once the weights are known
    (``np.isfinite(w).all()``); pass False when it is not checked. Tensor constants are checked here.
    """
    import tvm
    from tvm import relax

    unknown = [f for f in (families or ()) if f not in FAMILIES]
    if unknown:
        from canao.errors import CanaoError

        raise CanaoError(f"unknown rule families {unknown}", f"use names from {sorted(FAMILIES)}")
    sink = log if log is not None else RewriteLog()

    def transform(mod, ctx):
        updates = {}
        first_record = len(sink.records)
        for gv, func in mod.functions.items():
            if not isinstance(func, relax.Function) or (functions is not None and gv.name_hint not in functions):
                continue
            if func.attrs is not None and "Primitive" in func.attrs:
                continue
            new = simplify_function(func, gv.name_hint, sink, families, limits, finite_weights)
            if new is not func:
                updates[gv] = new
        if not updates:
            return mod
        new_mod = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
        for gv, func in updates.items():
            new_mod[gv] = func
        if not relax.analysis.check_well_formed(new_mod) and relax.analysis.check_well_formed(mod):
            # never hand on a broken module: keep the original and say so in the log
            del sink.records[first_record:]
            sink.functions.append({"error": "rewritten module was not well formed; kept the original"})
            return mod
        return new_mod

    return tvm.transform.module_pass(transform, opt_level=0, name="PolynomialSimplify")
