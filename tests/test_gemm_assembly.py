"""The default Matmul schedule's register tile, read back from the assembly LLVM emits (issue #13,
item 8): a GEMM + bias built by ``build()`` (the canao pipeline) for AVX-512, AVX2 and aarch64
NEON, its weight a parameter (as a model's Linear: the build lifts and lays it out) or a second
input (a GEMM between activations), its innermost k loop found in the text
(``canao.codegen.asm_check``), and checked to be the micro-kernel the schedule asks for:

* every FMA is a packed one on full-width vector registers: ``vfmadd...ps`` on ``zmm`` (AVX-512) or
  ``ymm`` (AVX2), ``fmla v.4s`` (NEON, by vector or by lane ``v.s[i]``); no scalar FMA;
* the FMAs go into exactly mr * nr / lanes distinct accumulators (``CPUTraits.matmul_tile``: the
  mr x nr tile in vectors of ``lanes``), each updated the same number of times per iteration (1,
  or LLVM's unroll factor of the k loop), so FMAs per iteration = accumulators x unroll;
* no stack access (spill / reload) and no call inside the loop.

The kernels are only generated, never linked or run (for aarch64, LLVM's AArch64 backend is
enough; ``build()`` runs just the weight transform, on this CPU), so the checks are deterministic
and the module takes about 15 s. Run it alone with ``pytest tests/test_gemm_assembly.py -v``; a
failure prints the loop.
"""
import functools

import pytest

from canao.codegen.asm_check import AARCH64, X86, detect_arch, find_loops, gemm_inner_loop, register_tile_accumulators

# (M, K, N): MiniLM's FFN-up GEMM at seq 128, and a K-heavy one (FFN-down: a long k loop, few columns)
SHAPES = {"ffn-up": (128, 384, 1536), "k-heavy": (128, 1536, 384)}

# Explicit CPUs, not the host's: the assembly must not depend on the machine the test runs on.
# skylake-avx512: LLVM's tuning for it prefers 256-bit vectors in its own vectoriser; the schedule's
# explicit 16-lane vectors must still come out as zmm. android-arm64 is the named phone target.
TARGETS = {
    "avx512": ("llvm -mcpu=skylake-avx512 -num-cores=2", X86, "x86_64"),
    "avx2": ("llvm -mcpu=haswell -num-cores=2", X86, "x86_64"),
    "neon": ("android-arm64", AARCH64, "aarch64"),
}


def _skip_without_backend(llvm_name: str):
    from tvm.target import codegen

    if llvm_name not in codegen.llvm_get_targets():
        pytest.skip(f"this TVM's LLVM has no {llvm_name} backend (llvm_get_targets() lacks '{llvm_name}'), "
                    "so its assembly cannot be generated here")


def _gemm_bias(m: int, k: int, n: int, operand: str):
    """main(x, w, b) = x @ W + b as an ImportedModel. ``operand="weight"``: W and b are weights
    (``num_input`` = 1) and W is stored [n, k] as torch.nn.Linear keeps it, so the build lifts the
    transpose (and whatever the build does to weights) out of the kernel, as for a model's Linear.
    ``"activation"``: W [k, n] is an input (num_input = 2), a GEMM between two activations."""
    import numpy as np
    from tvm import relax
    from tvm.script import relax as R

    from canao.frontends.imported import ImportedModel, InputSpec

    weight = operand == "weight"
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((m, k), "float32"))
    w = relax.Var("w", R.Tensor((n, k) if weight else (k, n), "float32"))
    b = relax.Var("b", R.Tensor((n,), "float32"))
    with bb.function("main", [x, w, b], attrs={"num_input": 1 if weight else 2}):
        with bb.dataflow():
            rhs = bb.emit(relax.op.permute_dims(w, [1, 0])) if weight else w
            y = bb.emit(relax.op.matmul(x, rhs))
            out = bb.emit_output(relax.op.add(y, b))
        bb.emit_func_output(out)
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((n,)).astype("float32")]
    inputs = [InputSpec("x", (m, k), "float32")]
    if weight:
        params.insert(0, rng.standard_normal((n, k)).astype("float32"))
    else:
        inputs.append(InputSpec("w", (k, n), "float32"))
    return ImportedModel(f"gemm-bias-{m}x{k}x{n}-{operand}", bb.get(), params, inputs)


@functools.lru_cache(maxsize=None)
def _assembly(target_name: str, shape: tuple, operand: str) -> str:
    """The GEMM + bias built by ``build()`` (the canao pipeline, LP-Fusion's yellow fusions settled
    by the deterministic "default" policy instead of measured), as assembly text."""
    import dataclasses

    from canao.codegen.build import build
    from canao.codegen.targets import resolve_target

    # Only code is generated (never exported): the C++ driver that would link an aarch64 library
    # is not needed, so the build must not stop for its absence.
    spec = dataclasses.replace(resolve_target(target_name), cross_compiler=None)
    compiled = build(_gemm_bias(*shape, operand), spec, "canao", options={"yellow": "default"})
    return "\n".join(m.inspect_source("asm") for m in compiled.executable.mod.imports)


@pytest.mark.parametrize("operand", ["weight", "activation"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("isa", list(TARGETS))
def test_gemm_inner_loop_is_the_register_tile(isa, shape, operand):
    from canao.codegen.schedules import cpu_traits
    from canao.codegen.targets import resolve_target

    target_name, arch, llvm_name = TARGETS[isa]
    _skip_without_backend(llvm_name)
    traits = cpu_traits(resolve_target(target_name).tvm_target())
    assert traits.isa == isa, traits
    m, _, n = shape
    mr, nr = traits.matmul_tile(32)
    lanes = traits.lanes(32)
    # the shapes are chosen so the schedule uses its preferred tile (no narrower divisor tile)
    assert m % mr == 0 and n % nr == 0, (shape, mr, nr)
    tile = register_tile_accumulators(traits)  # mr * nr / lanes: AVX-512 8*32/16, NEON 8*8/4 = 16; AVX2 4*16/8 = 8

    asm = _assembly(target_name, shape, operand)
    assert detect_arch(asm) == arch
    loop = gemm_inner_loop(asm, arch)
    where = f"{loop.summary()}\n{loop.text}"

    # packed FMAs on full-width vector registers only
    assert loop.scalar_fmas == [], where
    assert {f.vector_bits for f in loop.fmas} == {traits.vector_bits}, where
    assert {f.lanes for f in loop.fmas} == {lanes}, where
    mnemonics = {f.instruction.mnemonic for f in loop.fmas}
    if arch == X86:
        assert all(mn.startswith("vfmadd") and mn.endswith("ps") for mn in mnemonics), where
        reg = {512: "%zmm", 256: "%ymm"}[traits.vector_bits]
        assert all(f.dest.startswith(reg) for f in loop.fmas), where
    else:
        assert mnemonics == {"fmla"}, where
        assert all(f.instruction.operands[0].endswith(".4s") for f in loop.fmas), where

    # the register tile: mr * nr / lanes accumulators, each updated once per k step
    acc = loop.accumulators
    assert len(acc) == tile, where
    unroll = set(acc.values())
    assert len(unroll) == 1, where  # every accumulator updated equally often per iteration
    (per_acc,) = unroll
    assert loop.fma_count == tile * per_acc, where  # per_acc: k steps per iteration (LLVM's unroll)

    # no spills / reloads, nothing called
    assert loop.stack_accesses == [], where
    assert loop.calls == [], where


def test_spill_check_sees_an_oversized_tile():
    """The spill check is not vacuous: an 8 x 16 tile on AVX2 (16 ymm accumulators, the whole
    register file, no room for B or the broadcast A) forces LLVM to spill inside the k loop."""
    import tvm
    from tvm import te, topi

    from canao.codegen.schedules import CPUTraits, Matmul

    _skip_without_backend("x86_64")
    a, w = te.placeholder((64, 256), name="A"), te.placeholder((256, 128), name="W")
    b = te.placeholder((128,), name="b")
    k = te.reduce_axis((0, 256), "k")
    mm = te.compute((64, 128), lambda i, j: te.sum(a[i, k] * w[k, j], axis=k), name="matmul")
    func = te.create_prim_func([a, w, b, topi.add(mm, b)])
    target = tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 1})

    def inner_loop(traits):
        sch = Matmul().schedule(func, target, traits)
        return gemm_inner_loop(tvm.tirx.build(sch.mod["main"], target=target).inspect_source("asm"), X86)

    fits = inner_loop(CPUTraits("avx2", 256, 16, 1))  # the real AVX2 traits: 4 x 16
    assert fits.stack_accesses == [] and len(fits.accumulators) == 8, fits.summary()
    too_big = CPUTraits("avx2", 256, 64, 1)  # pretend 64 registers: mr = 8
    assert too_big.matmul_tile() == (8, 16)
    spilled = inner_loop(too_big)
    assert spilled.stack_accesses, f"{spilled.summary()}\n{spilled.text}"


# --- the reader itself, on hand-written snippets -------------------------------------------------

X86_SNIPPET = """
\t.type\tkernel,@function
kernel:
\tpushq\t%rbp
\tmovq\t%rsp, %rbp
.LBB0_1:                                # outer
\tvbroadcastss\t(%rdi), %zmm2
.LBB0_2:                                # inner
\tvfmadd231ps\t%zmm1, %zmm2, %zmm0      # a comment with vfmadd231ps in it
\tvfmadd231ps\t(%rsi), %zmm2, %zmm3
\tvmovups\t%zmm4, -64(%rbp)
\tvfmadd231ss\t%xmm1, %xmm2, %xmm5
\taddq\t$4, %rsi
\tjne\t.LBB0_2
\tdecq\t%rcx
\tjne\t.LBB0_1
\tpopq\t%rbp
\tretq
"""

AARCH64_SNIPPET = """
\t.type\tkernel,@function
kernel:
.LBB1_3:
\tld1r\t{ v24.4s }, [x6], #4          // a comment with fmla in it
\tfmla\tv20.4s, v25.4s, v24.4s
\tfmla\tv22.4s, v25.4s, v24.s[0]
\tfmla\tv22.4s, v26.4s, v24.s[1]
\tfmadd\ts1, s2, s3, s1
\tstr\tq8, [sp, #16]
\tldr\tq9, [x29, #-16]
\tsubs\tx5, x5, #1
\tb.ne\t.LBB1_3
\tret
"""


def test_reader_x86_snippet():
    loops = find_loops(X86_SNIPPET)
    assert [lp.label for lp in loops] == [".LBB0_2"]  # innermost only; the outer one contains it
    assert len(find_loops(X86_SNIPPET, innermost=False)) == 2
    loop = gemm_inner_loop(X86_SNIPPET)
    assert loop.arch == X86 and loop.function == "kernel" and loop.frame_pointer
    assert loop.fma_count == 3 and len(loop.vector_fmas) == 2 and len(loop.scalar_fmas) == 1
    assert loop.accumulators == {"%zmm0": 1, "%zmm3": 1, "%xmm5": 1}
    assert {f.vector_bits for f in loop.vector_fmas} == {512} and {f.lanes for f in loop.vector_fmas} == {16}
    assert [i.mnemonic for i in loop.stack_accesses] == ["vmovups"]  # %rbp is the frame pointer here


def test_reader_rbp_without_frame_is_a_plain_register():
    text = X86_SNIPPET.replace("\tmovq\t%rsp, %rbp\n", "")
    assert gemm_inner_loop(text).stack_accesses == []


def test_reader_aarch64_snippet():
    loop = gemm_inner_loop(AARCH64_SNIPPET)
    assert loop.arch == AARCH64 and loop.label == ".LBB1_3"
    assert loop.fma_count == 4 and len(loop.scalar_fmas) == 1  # '#' is an immediate, not a comment
    assert loop.accumulators == {"v20": 1, "v22": 2, "s1": 1}
    assert [f.lane_form for f in loop.vector_fmas] == [False, True, True]
    assert {f.lanes for f in loop.vector_fmas} == {4}
    assert [i.mnemonic for i in loop.stack_accesses] == ["str"]  # x29 only counts with a frame set up


def test_reader_refuses_assembly_without_fma_loop():
    with pytest.raises(ValueError, match="no loop with a fused multiply-add"):
        gemm_inner_loop(".LBB0_1:\n\taddq\t$1, %rax\n\tjne\t.LBB0_1\n")
