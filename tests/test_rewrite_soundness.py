"""Every rule of the polynomial engine on its own left-hand side, with +-inf, NaN, zeros and negatives.

Each case builds a tiny function whose element-wise DAG is a rule's left-hand side, runs the engine with
the families the rule needs, checks the rewrite happened (or, for a left-hand side outside a guarded
rule's precondition, that it did not), and compares the numbers NaN-aware on inputs full of special
values: with numpy's IEEE semantics (``evaluate``) and with TVM-built code (all cases in one module,
so the suite builds two modules, not one per case). Breaking any rule makes its case fail: a wrong
right-hand side changes the numbers, a dropped rule leaves the expected op in place.
"""
import numpy as np
import pytest
import tvm
from tvm import relax

from canao import analysis
from canao.fusion.polynomial import PolynomialSimplify, RewriteLog

from polynomial_check import assert_same_values, evaluate, run_module

F32 = "float32"
SHAPE = (4, 8)
op = relax.op
SPECIAL = [np.inf, -np.inf, np.nan, 0.0, -2.5, -0.5, 0.25, 3.0]


def c(v):
    return relax.const(v, F32)


def inputs():
    """x, y: every special value in every column (x and y meet each other's in all combinations);
    m: a boolean mask; w: a weight (a compile-time param) with a zero, negatives and an infinity."""
    x = np.array([SPECIAL[(i + j) % 8] for i in range(4) for j in range(8)], F32).reshape(SHAPE)
    y = np.array([SPECIAL[(3 * i + j + 1) % 8] for i in range(4) for j in range(8)], F32).reshape(SHAPE)
    m = (np.arange(32).reshape(SHAPE) % 3) == 0
    w = np.array([0.0, 1.0, -1.0, 2.0, -3.0, 0.5, np.inf, 4.0], F32)
    return [x, y, m, w]


def t(x):
    """tanh(x): provably never +-inf (the analysis knows it)."""
    return op.tanh(x)


# name, families, body(x, y, m, w), expect(ops after, ops before): the rule's left-hand side in body
CASES = [
    # identities
    ("a+0", ["identities"], lambda x, y, m, w: op.multiply(op.add(x, c(0.0)), y), lambda a, b: "relax.add" not in a),
    ("0+a", ["identities"], lambda x, y, m, w: op.multiply(op.add(c(0.0), x), y), lambda a, b: "relax.add" not in a),
    ("a*1", ["identities"], lambda x, y, m, w: op.add(op.multiply(x, c(1.0)), y), lambda a, b: "relax.multiply" not in a),
    ("1*a", ["identities"], lambda x, y, m, w: op.add(op.multiply(c(1.0), x), y), lambda a, b: "relax.multiply" not in a),
    ("a-0", ["identities"], lambda x, y, m, w: op.multiply(op.subtract(x, c(0.0)), y), lambda a, b: "relax.subtract" not in a),
    ("a/1", ["identities"], lambda x, y, m, w: op.add(op.divide(x, c(1.0)), y), lambda a, b: "relax.divide" not in a),
    ("--a, a-b=a+(-b)", ["identities"], lambda x, y, m, w: op.subtract(x, op.negative(y)),
     lambda a, b: a == {"relax.add": 1}),
    ("-a=-1*a", ["identities", "associativity", "commutativity", "constant_folding"],
     lambda x, y, m, w: op.multiply(op.negative(x), c(2.0)), lambda a, b: a == {"relax.multiply": 1}),
    ("a*0 finite a", ["identities"], lambda x, y, m, w: op.add(op.multiply(op.where(m, c(2.0), c(3.0)), c(0.0)), y),
     lambda a, b: "relax.multiply" not in a),
    ("0*a finite a", ["identities"], lambda x, y, m, w: op.add(op.multiply(c(0.0), op.where(m, c(2.0), c(-3.0))), y),
     lambda a, b: "relax.multiply" not in a),
    ("a*0 guard", ["identities"], lambda x, y, m, w: op.add(op.multiply(x, c(0.0)), y), lambda a, b: a == b),
    ("0*a guard", ["identities"], lambda x, y, m, w: op.add(op.multiply(c(0.0), t(x)), y), lambda a, b: a == b),
    ("a-a finite a", ["identities"], lambda x, y, m, w: op.add(op.subtract(op.where(m, c(1.0), c(-1.0)),
                                                                     op.where(m, c(1.0), c(-1.0))), y),
     lambda a, b: "relax.subtract" not in a),
    ("a-a guard", ["identities"], lambda x, y, m, w: op.add(op.subtract(t(x), t(x)), y),
     lambda a, b: a.get("relax.subtract") == 1),
    # distributivity
    ("a*b+a*c noinf a", ["distributivity", "commutativity"],
     lambda x, y, m, w: op.add(op.multiply(t(x), w), op.multiply(t(x), op.multiply(w, c(2.0)))),
     lambda a, b: a.get("relax.multiply", 0) < b["relax.multiply"]),
    ("a*b+a*c same-sign numbers", ["distributivity", "constant_folding"],
     lambda x, y, m, w: op.add(op.multiply(x, c(-2.0)), op.multiply(x, c(-0.5))), lambda a, b: a == {"relax.multiply": 1}),
    ("a*b+a*c guard", ["distributivity", "commutativity", "constant_folding"],
     lambda x, y, m, w: op.add(op.multiply(x, c(2.0)), op.multiply(x, c(-1.0))), lambda a, b: a == b),
    ("a*(b+c) expands", ["distributivity", "constant_folding", "associativity", "commutativity"],
     lambda x, y, m, w: op.add(op.multiply(op.add(x, c(2.0)), c(3.0)), c(1.0)),
     lambda a, b: "relax.multiply" not in a or sum(a.values()) < sum(b.values())),
    ("a+a", ["distributivity", "associativity", "commutativity", "constant_folding"],
     lambda x, y, m, w: op.multiply(op.add(x, x), c(3.0)), lambda a, b: a == {"relax.multiply": 1}),
    ("a*b+a b>0", ["distributivity", "constant_folding"], lambda x, y, m, w: op.add(op.multiply(x, c(3.0)), x),
     lambda a, b: a == {"relax.multiply": 1}),
    ("a*b+a noinf a", ["distributivity", "constant_folding"],
     lambda x, y, m, w: op.add(op.multiply(t(x), w), t(x)), lambda a, b: a == {"relax.tanh": 1, "relax.multiply": 1}),
    ("a*b+a guard", ["distributivity", "constant_folding"], lambda x, y, m, w: op.add(op.multiply(x, c(-2.0)), x),
     lambda a, b: a == b),
    # division
    ("a/b, recip fold", ["division", "constant_folding"], lambda x, y, m, w: op.divide(x, c(4.0)),
     lambda a, b: a == {"relax.multiply": 1}),
    ("recip(recip(a))", ["division", "identities"],
     lambda x, y, m, w: op.add(op.divide(c(1.0), op.divide(c(1.0), x)), y), lambda a, b: a == {"relax.add": 1}),
    ("recip(a*b)", ["division", "identities", "associativity", "commutativity", "constant_folding"],
     lambda x, y, m, w: op.divide(c(2.0), op.multiply(x, c(0.5))), lambda a, b: sum(a.values()) == 1),
    ("rsqrt=recip(sqrt)", ["division"], lambda x, y, m, w: op.divide(y, op.sqrt(x)),
     lambda a, b: "relax.rsqrt" in a and "relax.divide" not in a),
    # powers
    ("a^1", ["powers"], lambda x, y, m, w: op.add(op.power(x, c(1.0)), y), lambda a, b: a == {"relax.add": 1}),
    ("a^2", ["powers"], lambda x, y, m, w: op.power(x, c(2.0)), lambda a, b: a == {"relax.multiply": 1}),
    ("a^3", ["powers"], lambda x, y, m, w: op.power(x, c(3.0)), lambda a, b: a == {"relax.multiply": 2}),
    ("a^-1", ["powers"], lambda x, y, m, w: op.add(op.power(x, c(-1.0)), y),
     lambda a, b: "relax.power" not in a and "relax.divide" in a),
    ("a^0.5 nonneg", ["powers"], lambda x, y, m, w: op.power(op.exp(x), c(0.5)),
     lambda a, b: "relax.power" not in a and "relax.sqrt" in a),
    ("a^0.5 noinf", ["powers"], lambda x, y, m, w: op.power(t(x), c(0.5)),
     lambda a, b: "relax.power" not in a and "relax.sqrt" in a),
    ("a^0.5 guard", ["powers"], lambda x, y, m, w: op.power(x, c(0.5)), lambda a, b: a == b),
    ("a^-0.5 nonneg", ["powers"], lambda x, y, m, w: op.power(op.exp(x), c(-0.5)),
     lambda a, b: "relax.power" not in a and "relax.rsqrt" in a),
    ("a^-0.5 noinf", ["powers"], lambda x, y, m, w: op.power(op.erf(x), c(-0.5)),
     lambda a, b: "relax.power" not in a and "relax.rsqrt" in a),
    ("a^-0.5 guard", ["powers"], lambda x, y, m, w: op.power(x, c(-0.5)), lambda a, b: a == b),
    ("sqrt(a)*sqrt(a) nonneg", ["powers"], lambda x, y, m, w: op.multiply(op.sqrt(op.exp(x)), op.sqrt(op.exp(x))),
     lambda a, b: a == {"relax.exp": 1}),
    ("sqrt(a)*sqrt(a) of a square", ["powers"],
     lambda x, y, m, w: op.multiply(op.sqrt(op.multiply(x, x)), op.sqrt(op.multiply(x, x))),
     lambda a, b: a == {"relax.multiply": 1}),
    ("sqrt(a)*sqrt(a) guard", ["powers"], lambda x, y, m, w: op.multiply(op.sqrt(x), op.sqrt(x)),
     lambda a, b: a == {"relax.multiply": 1, "relax.sqrt": 1}),
    # where
    ("op(where)", ["where", "constant_folding"],
     lambda x, y, m, w: op.add(op.multiply(op.subtract(op.where(m, c(1.0), c(0.0)), c(1.0)), c(4.0)), y),
     lambda a, b: a == {"relax.where": 1, "relax.add": 1}),
    ("where(c,a,a)", ["where"], lambda x, y, m, w: op.add(op.where(m, x, x), y), lambda a, b: a == {"relax.add": 1}),
    # constant folding (f64, kept only when representable in float32)
    ("fold + - * /", ["constant_folding", "associativity"],
     lambda x, y, m, w: op.multiply(x, op.divide(op.subtract(op.add(c(1.0), c(2.0)), c(0.5)), op.multiply(c(2.0), c(4.0)))),
     lambda a, b: a == {"relax.multiply": 1}),
    ("fold -c", ["constant_folding", "identities", "associativity"], lambda x, y, m, w: op.multiply(x, op.negative(c(3.0))),
     lambda a, b: a == {"relax.multiply": 1}),
    ("fold sqrt", ["constant_folding"], lambda x, y, m, w: op.multiply(x, op.sqrt(c(4.0))), lambda a, b: a == {"relax.multiply": 1}),
    ("fold pow", ["constant_folding"], lambda x, y, m, w: op.multiply(x, op.power(c(2.0), c(3.0))),
     lambda a, b: a == {"relax.multiply": 1}),
    ("fold overflow guard", ["constant_folding", "associativity"],
     lambda x, y, m, w: op.multiply(op.multiply(x, c(1e30)), c(1e30)), lambda a, b: a == b),
    ("fold underflow guard", ["constant_folding", "associativity"],
     lambda x, y, m, w: op.multiply(op.multiply(x, c(1e-30)), c(1e-30)), lambda a, b: a == b),
]


def runtime_ops(mod):
    """Op counts of main once weight-only work is lifted out (what runs per inference)."""
    return analysis.op_counts(relax.transform.LiftTransformParams()(mod))


def _case_module(body):
    bb = relax.BlockBuilder()
    params = [relax.Var("x", relax.TensorType(SHAPE, F32)), relax.Var("y", relax.TensorType(SHAPE, F32)),
              relax.Var("m", relax.TensorType(SHAPE, "bool")), relax.Var("w", relax.TensorType((8,), F32))]
    with bb.function("main", params, attrs={"num_input": 3}):
        with bb.dataflow():
            out = bb.emit_output(body(*params))
        bb.emit_func_output(out)
    return bb.get()


@pytest.fixture(scope="module")
def cases():
    out = []
    for name, families, body, expect in CASES:
        mod = _case_module(body)
        log = RewriteLog()
        new = PolynomialSimplify(log=log, families=families, finite_weights=False)(mod)  # w holds an inf
        out.append((name, mod, new, expect))
    return out


@pytest.mark.parametrize("index", range(len(CASES)), ids=[case[0] for case in CASES])
def test_rule_fires_where_proven_and_keeps_values(cases, index):
    name, mod, new, expect = cases[index]
    before, after = runtime_ops(mod), runtime_ops(new)
    assert expect(after, before), (name, before, after)
    args = inputs()
    reference = evaluate(mod, args)
    assert not np.isfinite(reference).all()  # the special values reach the output
    assert_same_values(reference, evaluate(new, args), tol=1e-6)


def _bundle(mods):
    out = tvm.IRModule()
    for i, mod in enumerate(mods):
        out[f"case{i}"] = mod["main"].with_attr("global_symbol", f"case{i}")
    return out


def test_tvm_build_agrees_on_special_values(cases):
    """The same comparison through TVM's generated code: one module of all originals, one of all rewrites."""
    args = inputs()
    originals, rewritten = _bundle([m for _, m, _, _ in cases]), _bundle([n for _, _, n, _ in cases])
    exe_a = tvm.compile(originals, target=tvm.target.Target({"kind": "llvm"}))
    exe_b = tvm.compile(rewritten, target=tvm.target.Target({"kind": "llvm"}))
    vm_a, vm_b = relax.VirtualMachine(exe_a, tvm.cpu()), relax.VirtualMachine(exe_b, tvm.cpu())
    tensors = [tvm.runtime.tensor(a, tvm.cpu()) for a in args]
    for i, (name, *_rest) in enumerate(cases):
        reference, candidate = vm_a[f"case{i}"](*tensors).numpy(), vm_b[f"case{i}"](*tensors).numpy()
        try:
            assert_same_values(reference, candidate, tol=1e-6)
        except AssertionError as err:
            raise AssertionError(f"case {name}: {err}") from None

