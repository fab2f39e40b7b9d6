"""Tuning that starts from the default schedules (on targets that run here, where every variant
is first checked against the default kernel on random inputs): the matmul rule's register tile is the knob
that matters most and the one a fixed heuristic gets wrong for some shapes, so every matmul
kernel is first tried with each tile that fits the register file. The fastest variant goes into
a database of its own (``WORK/variants``, MetaSchedule's JSON format, its trace replayable by
ApplyDatabase), next to MetaSchedule's records; the side-by-side verdict then picks among the
default, the best variant and the best MetaSchedule record.

Kept out of MetaSchedule's own database on purpose: its evolutionary search seeds from the best
records and would try to mutate and post-process a hand-made trace it did not sample.
"""
from dataclasses import dataclass
from typing import Dict, List, Tuple

from .store import TuningStore
from .tasks import TuningTask

VARIANTS_DIR = "variants"


@dataclass(frozen=True)
class _FixedTile:
    """Target traits with the matmul register tile pinned to one choice."""
    base: object
    tile: Tuple[int, int]

    def __getattr__(self, name):
        return getattr(self.base, name)

    def matmul_tile(self, dtype_bits: int = 32):
        return self.tile


def tile_choices(traits, dtype_bits: int = 32) -> List[Tuple[int, int]]:
    """(mr, nr) register tiles whose accumulators, B vectors and one broadcast A fit in the
    register file: mr * v + v + 1 <= registers, v = nr / lanes vectors per row."""
    lanes = traits.lanes(dtype_bits)
    out = []
    for v in (1, 2, 3, 4):
        for mr in (2, 4, 6, 8, 12, 16):
            if mr * v + v + 1 <= traits.vector_registers:
                out.append((mr, v * lanes))
    return out


def variant_schedules(task: TuningTask, target) -> Dict[Tuple[int, int], object]:
    """{tile: Schedule} for every distinct kernel the tile choices give, the default's excluded,
    on a matmul kernel ({} otherwise)."""
    from tvm import s_tir

    from canao.codegen.schedules.rules import Matmul
    from canao.codegen.schedules.rules.matmul import find_matmul
    from canao.codegen.schedules.target_traits import cpu_traits

    func = task.mod["main"]
    if target.kind.name != "llvm" or find_matmul(s_tir.Schedule(func)) is None:
        return {}
    import tvm_ffi

    traits = cpu_traits(target)
    out = {}
    with target:
        default = Matmul().schedule(func, target, traits)
        seen = {tvm_ffi.structural_hash(default.mod)} if default is not None else set()
        for tile in tile_choices(traits):
            try:
                sch = Matmul().schedule(func, target, _FixedTile(traits, tile))
            except Exception:  # the rule refuses this shape with this tile
                sch = None
            if sch is None:
                continue
            key = tvm_ffi.structural_hash(sch.mod)
            if key not in seen:  # tiles clipped to the same kernel (or to the default) count once
                seen.add(key)
                out[tile] = sch
    return out


def search_variants(tasks: List[TuningTask], target_spec, builder, runner, store: TuningStore, manifest: dict) -> int:
    """Measure the tile variants of every matmul task not done before; commit the best of each.
    Returns how many variants were measured (resumable: done tasks are marked in the manifest)."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from canao.codegen.schedules.rules import Matmul
    from canao.codegen.schedules.target_traits import cpu_traits

    from .kernel_check import agrees
    from .kernel_timing import measure_modules

    if not target_spec.runs_locally:
        return 0  # every variant is checked against the default by running both here
    target = target_spec.tvm_target()
    todo = [t for t in tasks if "variants" not in manifest["tasks"].get(t.key, {})]
    database = None
    measured = 0
    for task in todo:
        schedules = variant_schedules(task, target)
        entry = manifest["tasks"].setdefault(task.key, {"name": task.name})
        if not schedules:
            entry["variants"] = {"tried": 0}
            store.save_manifest(manifest)
            continue
        with target:
            default = Matmul().schedule(task.mod["main"], target, cpu_traits(target))
        reference = default.mod if default is not None else task.mod
        wrong = [t for t in schedules if not agrees(schedules[t].mod, reference, target,
                                                    name=f"{task.name} tile {t[0]}x{t[1]}")]
        for tile in wrong:
            del schedules[tile]
        entry["variants_wrong"] = [list(t) for t in wrong]
        if not schedules:
            entry["variants"] = {"tried": 0}
            store.save_manifest(manifest)
            continue
        tiles = list(schedules)
        times, _row = measure_modules([schedules[t].mod for t in tiles], target_spec, builder, runner,
                                      names=[f"{task.name} tile {t[0]}x{t[1]}" for t in tiles])
        measured += len(tiles)
        timed = [(us, tile) for us, tile in zip(times, tiles) if us is not None]
        if timed:
            us, tile = min(timed)
            if database is None:
                database = variants_store(store).open_database()
            workload = database.commit_workload(task.mod)
            database.commit_tuning_record(ms.database.TuningRecord(
                schedules[tile].trace, workload, [us * 1e-6], target, ArgInfo.from_prim_func(task.mod["main"])))
            entry["variants"] = {"tried": len(tiles), "best_tile": list(tile), "best_us": us}
        else:
            entry["variants"] = {"tried": len(tiles)}
        store.save_manifest(manifest)  # a rerun after a kill skips the tasks done
    return measured


def variants_store(store: TuningStore) -> TuningStore:
    return TuningStore(store.dir / VARIANTS_DIR)
