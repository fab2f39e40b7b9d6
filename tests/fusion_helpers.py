"""Tiny Relax modules built with BlockBuilder, and a runner to compare them numerically."""
import numpy as np
import tvm
from tvm import relax


def build_module(fn_body, inputs, weights=()):
    """main(inputs..., weights...) with num_input set; ``fn_body(bb, *vars)`` returns the output."""
    bb = relax.BlockBuilder()
    params = [relax.Var(name, relax.TensorType(shape, dtype)) for name, shape, dtype in list(inputs) + list(weights)]
    with bb.function("main", params, attrs={"num_input": len(inputs)}):
        with bb.dataflow():
            out = bb.emit_output(fn_body(bb, *params))
        bb.emit_func_output(out)
    return bb.get()


def run(mod, args):
    exe = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    vm = relax.VirtualMachine(exe, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(a, tvm.cpu()) for a in args])
    return out.numpy()


def op_count(mod, name, func="main"):
    from canao.analysis import op_counts

    return op_counts(mod, func).get(name, 0)


def random_args(mod, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for p in mod["main"].params:
        shape = [int(d) for d in p.ty.shape]
        out.append(rng.standard_normal(shape).astype(str(p.ty.dtype)))
    return out
