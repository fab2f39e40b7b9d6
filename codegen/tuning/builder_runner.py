"""MetaSchedule's builder and runner as CANAO sets them up for tuning: a small batch is cheap and a
cross target links with its own compiler.

MetaSchedule's stock build function imports ``tvm.s_tir.tensor_intrin`` in every builder worker
(15-45 s here, because the CUDA intrinsics are registered eagerly) and the builder starts fresh
workers for every batch; that import was the "25 s per batch" seen on this machine. CPU kernels
tuned by CANAO are not tensorized, so the build below skips it (it is imported again if a
candidate turns out to need it).
"""
import os
import tempfile

# Kept light: this module is imported by every builder worker to unpickle the functions below.

BUILD_TIMEOUT_S = 120.0  # a candidate that builds longer is recorded as failed instead of waited for
RUN_TIMEOUT_S = 60.0  # the same for one candidate's runs, all repeats together


def build_candidate(mod, target, _params):
    """Compile one scheduled candidate (what MetaSchedule's default_build does, without the
    tensor-intrinsic import that dominates a batch)."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    try:
        return tvm_build(mod, target=target)
    except Exception:  # a tensorized candidate: its intrinsics must be registered first
        import tvm.s_tir.tensor_intrin  # noqa: F401  pylint: disable=unused-import

        return tvm_build(mod, target=target)


def export_tar(rt_mod) -> str:
    """Host targets: object files in a tar, linked by the runner (MetaSchedule's default)."""
    from tvm.support.tar import tar

    path = os.path.join(tempfile.mkdtemp(prefix="canao-cand-"), "candidate." + tar.output_format)
    rt_mod.export_library(path, fcompile=tar)
    return path


class CrossExport:
    """Cross targets: a shared library linked here with the target's compiler, so the device
    (a phone behind RPC) needs no toolchain. Picklable, hence a class and not a closure."""

    def __init__(self, cross_compiler: str):
        self.cross_compiler = cross_compiler

    def __call__(self, rt_mod) -> str:
        path = os.path.join(tempfile.mkdtemp(prefix="canao-cand-"), "candidate.so")
        rt_mod.export_library(path, cc=self.cross_compiler)
        return path


def make_builder(target_spec):
    """A LocalBuilder for ``target_spec`` (cross-linking when the target has its own compiler)."""
    from tvm.s_tir.meta_schedule.builder import LocalBuilder

    export = CrossExport(target_spec.cross_compiler) if target_spec.cross_compiler else export_tar
    return LocalBuilder(max_workers=min(2, os.cpu_count() or 1), timeout_sec=BUILD_TIMEOUT_S,
                        f_build=build_candidate, f_export=export)


def make_local_runner():
    """A LocalRunner with MetaSchedule's evaluator defaults (3 runs, at least 100 ms per repeat)."""
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, LocalRunner

    return LocalRunner(timeout_sec=RUN_TIMEOUT_S,
                       evaluator_config=EvaluatorConfig(number=3, repeat=1, min_repeat_ms=100))

