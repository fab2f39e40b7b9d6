"""Numerical checks of a rewrite (test helpers; no library code uses them).

``run_module`` builds a module with TVM for the local CPU; ``evaluate`` interprets the element-wise
subset of Relax with numpy's IEEE float semantics (fast enough for hundreds of property-test
examples); ``assert_same_values`` compares NaN-aware: NaN where and only where the reference has NaN,
the same infinities, and close values elsewhere.
"""
import math
from typing import Sequence

import numpy as np


def run_module(mod, args: Sequence[np.ndarray], func: str = "main") -> np.ndarray:
    """Compile ``mod`` for the local CPU with the default Relax pipeline and call ``func(*args)``."""
    import tvm
    from tvm import relax

    exe = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    vm = relax.VirtualMachine(exe, tvm.cpu())
    out = vm[func](*[tvm.runtime.tensor(np.ascontiguousarray(a), tvm.cpu()) for a in args])
    return out.numpy() if hasattr(out, "numpy") else [o.numpy() for o in out]


def relax_op_count(mod, func: str = "main") -> int:
    """Relax operator calls in ``func`` (what the rewrite tries to reduce)."""
    from canao import analysis

    return sum(analysis.op_counts(mod, func).values())


def runtime_elementwise_flops(mod, func: str = "main") -> int:
    """FLOPs of the element-wise ops left in ``func`` after weight-only work is lifted out of it.

    Measured on the Relax module itself (op names and output shapes), independently of the engine's
    own cost bookkeeping, so a test can check that a rewrite never makes the hot path dearer.
    """
    import tvm
    from tvm import relax

    from canao.fusion.polynomial.cost import OP_FLOPS, numel
    from canao.fusion.polynomial.relax_terms import BINARY, UNARY, static_shape

    names = dict(BINARY, **UNARY, **{"relax.power": "pow", "relax.where": "where"})
    lifted = relax.transform.LiftTransformParams()(mod)
    total = [0]

    def visit(e):
        if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) and e.op.name in names:
            shape = static_shape(e.ty)
            if shape is not None:
                total[0] += numel(shape) * OP_FLOPS[names[e.op.name]]

    relax.analysis.post_order_visit(lifted[func].body, visit)
    return total[0]


def assert_same_values(reference, candidate, tol: float = 1e-5):
    """NaN-aware equality: same NaN mask, same infinities, finite values within ``tol`` relative to
    max(1, max |finite reference|). Lists and tuples compare element by element."""
    if isinstance(reference, (list, tuple)):
        assert isinstance(candidate, (list, tuple)) and len(reference) == len(candidate)
        for a, b in zip(reference, candidate):
            assert_same_values(a, b, tol)
        return
    ref, got = np.asarray(reference, "float64"), np.asarray(candidate, "float64")
    assert ref.shape == got.shape, (ref.shape, got.shape)
    nan_ref, nan_got = np.isnan(ref), np.isnan(got)
    assert np.array_equal(nan_ref, nan_got), f"NaN at different places: reference {ref[nan_ref != nan_got]}, " \
                                            f"candidate {got[nan_ref != nan_got]}"
    inf_ref, inf_got = np.isinf(ref), np.isinf(got)
    assert np.array_equal(ref[inf_ref | inf_got], got[inf_ref | inf_got]), \
        f"infinities differ: reference {ref[inf_ref | inf_got]}, candidate {got[inf_ref | inf_got]}"
    finite = ~(nan_ref | inf_ref)
    scale = max(1.0, float(np.max(np.abs(ref[finite]), initial=0.0)))
    np.testing.assert_allclose(got[finite], ref[finite], rtol=0, atol=tol * scale)


_ERF = np.vectorize(math.erf, otypes=["float64"])
_BINARY = {"relax.add": np.add, "relax.subtract": np.subtract, "relax.multiply": np.multiply,
           "relax.divide": np.divide, "relax.power": np.power, "relax.equal": np.equal}
_UNARY = {"relax.negative": np.negative, "relax.sqrt": np.sqrt, "relax.rsqrt": lambda a: 1 / np.sqrt(a),
          "relax.exp": np.exp, "relax.tanh": np.tanh, "relax.logical_not": np.logical_not,
          "relax.erf": lambda a: _ERF(a).astype(a.dtype)}
_REDUCE = {"relax.sum": np.sum, "relax.mean": np.mean, "relax.max": np.max}


def evaluate(mod, args: Sequence[np.ndarray], func: str = "main"):
    """Interpret ``func`` with numpy (float32 stays float32), reading the IR through its API.

    Covers the ops the polynomial engine rewrites plus reductions, matmul and layout ops; anything
    else raises NotImplementedError. Outputs: an array, or a list for a tuple result.
    """
    import tvm
    from tvm import relax

    f = mod[func]
    env = {p: np.asarray(a) for p, a in zip(f.params, args)}

    def shape(ty):
        return tuple(int(d) for d in ty.shape.values)

    def val(e):
        if isinstance(e, relax.Var):
            return env[e]
        if isinstance(e, tvm.ir.GenericConst):
            return e.value.numpy()
        if isinstance(e, relax.Tuple):
            return [val(x) for x in e.fields]
        if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op):
            return call(e)
        raise NotImplementedError(type(e))

    def call(e):
        name, args_ = e.op.name, e.args
        dtype = str(e.ty.dtype) if isinstance(e.ty, relax.TensorType) else None
        with np.errstate(all="ignore"):
            if name in _BINARY:
                out = _BINARY[name](val(args_[0]), val(args_[1]))
            elif name in _UNARY:
                out = _UNARY[name](val(args_[0]))
            elif name == "relax.where":
                out = np.where(val(args_[0]), val(args_[1]), val(args_[2]))
            elif name in ("relax.broadcast_to", "relax.full_like", "relax.zeros_like", "relax.ones_like",
                          "relax.full", "relax.zeros", "relax.ones"):
                fill = {"relax.zeros_like": 0, "relax.ones_like": 1, "relax.zeros": 0, "relax.ones": 1}
                if name == "relax.broadcast_to":
                    src = val(args_[0])
                elif name in fill:
                    src = np.asarray(fill[name])
                else:
                    src = val(args_[1])
                out = np.broadcast_to(src, shape(e.ty))
            elif name == "relax.astype":
                out = val(args_[0])
            elif name in _REDUCE:
                axes = tuple(int(a) for a in e.attrs.axis) if e.attrs.axis is not None else None
                out = _REDUCE[name](val(args_[0]), axis=axes, keepdims=bool(e.attrs.keepdims))
            elif name == "relax.matmul":
                out = np.matmul(val(args_[0]), val(args_[1]))
            elif name in ("relax.reshape", "relax.permute_dims"):
                out = val(args_[0])
                out = out.reshape(shape(e.ty)) if name == "relax.reshape" else np.transpose(
                    out, None if e.attrs.axes is None else [int(a) for a in e.attrs.axes])
            else:
                raise NotImplementedError(name)
        return np.array(out, dtype=dtype) if dtype is not None else out

    body = f.body
    for block in body.blocks:
        for b in block.bindings:
            env[b.var] = val(b.value)
    return val(body.body)
