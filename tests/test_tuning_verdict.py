"""Tuning that starts from the default schedules (register-tile variants) and the side-by-side
verdict that decides which kernel a build uses."""
import numpy as np
import pytest

from canao.codegen.schedules.target_traits import CPUTraits
from canao.codegen.tuning.store import TuningStore
from canao.codegen.tuning.variants import tile_choices, variants_store


@pytest.mark.parametrize("traits", [CPUTraits("avx512", 512, 32, 2), CPUTraits("avx2", 256, 16, 2),
                                    CPUTraits("neon", 128, 32, 4)])
def test_tile_choices_fit_the_register_file_and_include_the_default(traits):
    lanes = traits.lanes(32)
    choices = tile_choices(traits)
    assert traits.matmul_tile(32) in choices
    for mr, nr in choices:
        vectors = nr // lanes
        assert nr % lanes == 0 and mr * vectors + vectors + 1 <= traits.vector_registers


def _matmul_task():
    import tvm
    from tvm import te

    from canao.codegen.tuning.tasks import TuningTask

    a = te.placeholder((64, 96), "float32", name="A")
    b = te.placeholder((96, 128), "float32", name="B")
    k = te.reduce_axis((0, 96), name="k")
    c = te.compute((64, 128), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    d = te.compute((64, 128), lambda i, j: tvm.te.max(c[i, j], 0.0), name="D")
    func = te.create_prim_func([a, b, d]).with_attr("global_symbol", "main")
    return TuningTask(key="0", name="matmul_relu", mod=tvm.IRModule({"main": func}), weight=1, flop=2 * 64 * 96 * 128)


def test_every_tile_variant_computes_the_same_matmul(host_target):
    import tvm

    from canao.codegen.tuning.variants import variant_schedules

    task = _matmul_task()
    target = host_target.tvm_target()
    schedules = variant_schedules(task, target)
    assert len(schedules) >= 3  # distinct kernels besides the default's
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 96)).astype("float32")
    b = rng.standard_normal((96, 128)).astype("float32")
    expected = np.maximum(a @ b, 0)
    for tile, sch in schedules.items():
        lib = tvm.tirx.build(sch.mod, target=target)
        out = tvm.runtime.tensor(np.zeros((64, 128), "float32"))
        lib["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b), out)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4, err_msg=f"tile {tile}")


def test_non_matmul_kernels_have_no_variants(host_target):
    import tvm
    from tvm import te

    from canao.codegen.tuning.tasks import TuningTask
    from canao.codegen.tuning.variants import variant_schedules

    x = te.placeholder((64, 128), "float32", name="X")
    y = te.compute((64, 128), lambda i, j: x[i, j] * 2.0, name="Y")
    func = te.create_prim_func([x, y]).with_attr("global_symbol", "main")
    task = TuningTask("1", "scale", tvm.IRModule({"main": func}), 1, 64 * 128)
    assert variant_schedules(task, host_target.tvm_target()) == {}


def test_build_applies_each_kernels_side_by_side_winner(tmp_path):
    """first: the verdict keeps the default although the stored tuned time looks faster; second:
    the variant won; third: the verdict is stale (a later record), so stored times decide."""
    from tvm_ffi import structural_equal

    from canao.codegen.tuning.apply import _winners
    from canao.codegen.tuning.tasks import task_key
    from tuning_records import applied_schedule, commit, matmul, split_inner

    first, second, third = matmul(16), matmul(24), matmul(32)
    tuned = {mod: split_inner(mod, 4) for mod in (first, second, third)}  # MetaSchedule's records
    variant = split_inner(second, 8)  # the tile variant's record
    store = TuningStore(tmp_path / "db")
    commit(store.dir, [(first, tuned[first], [1e-6]), (second, tuned[second], [5e-6]),
                       (third, tuned[third], [1e-6]), (third, split_inner(third, 8), [2e-6])])
    commit(variants_store(store).dir, [(second, variant, [4e-6])])
    store.save_manifest({"tasks": {
        task_key(first): {"default_us": 50.0, "verdict": {"choice": "default", "records": 1, "variant_records": 0}},
        task_key(second): {"default_us": 50.0, "verdict": {"choice": "variant", "records": 1, "variant_records": 1}},
        task_key(third): {"default_us": 50.0, "verdict": {"choice": "default", "records": 1, "variant_records": 0}},
    }})
    applied = _winners(store)
    assert applied_schedule(applied, first) is None  # the default: no record
    assert structural_equal(applied_schedule(applied, second), variant.mod)
    assert not structural_equal(applied_schedule(applied, second), tuned[second].mod)
    assert structural_equal(applied_schedule(applied, third), tuned[third].mod)  # 1 us stored beats the 50 us default


def _matmul_transpose_task():
    """q = x @ w, reshaped into 12 heads of 32 and transposed: the QKV projection's epilogue."""
    import tvm
    from tvm import te

    from canao.codegen.tuning.tasks import TuningTask

    x = te.placeholder((128, 96), "float32", name="X")
    w = te.placeholder((96, 384), "float32", name="W")
    k = te.reduce_axis((0, 96), name="k")
    c = te.compute((128, 384), lambda i, j: te.sum(x[i, k] * w[k, j], axis=k), name="C")
    t = te.compute((12, 128, 32), lambda h, i, d: c[i, h * 32 + d], name="T")
    func = te.create_prim_func([x, w, t]).with_attr("global_symbol", "main")
    return TuningTask("2", "matmul_transpose", tvm.IRModule({"main": func}), 1, 2 * 128 * 96 * 384)


def test_the_numeric_check_accepts_exactly_the_variants_that_compute_the_reference(host_target):
    """``agrees`` is what keeps a wrong schedule out of the database: compare it with numpy."""
    import tvm

    from canao.codegen.schedules.rules import Matmul
    from canao.codegen.schedules.target_traits import cpu_traits
    from canao.codegen.tuning.kernel_check import agrees, random_args
    from canao.codegen.tuning.variants import variant_schedules

    task = _matmul_transpose_task()
    target = host_target.tvm_target()
    with target:
        default = Matmul().schedule(task.mod["main"], target, cpu_traits(target)).mod
    args = [a.numpy() for a in random_args(default["main"], 0)]
    expected = (args[0] @ args[1]).reshape(128, 12, 32).transpose(1, 0, 2)
    schedules = variant_schedules(task, target)
    assert schedules
    for tile, sch in schedules.items():
        lib = tvm.tirx.build(sch.mod, target=target)
        run = random_args(sch.mod["main"], 0)
        lib["main"](*run)
        right = np.allclose(run[2].numpy(), expected, rtol=1e-4, atol=1e-3)
        assert agrees(sch.mod, default, target) == right, f"tile {tile}"
    assert agrees(default, default, target)
    assert not agrees(task.mod, _matmul_task().mod, target)  # different shapes: no agreement
