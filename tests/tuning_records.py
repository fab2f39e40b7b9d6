"""Real MetaSchedule tuning records for the tuning-store tests (only tests use them, so they live
here): a real workload (a small matmul PrimFunc) and a real trace (a schedule applied to it),
committed through MetaSchedule's database API, so the store reads what tuning would write."""
import tvm
from tvm import s_tir, te
from tvm.s_tir.meta_schedule.arg_info import ArgInfo
from tvm.s_tir.meta_schedule.database import JSONDatabase, TuningRecord

from canao.codegen.tuning.store import MODULE_EQUALITY, RECORDS, WORKLOADS

TARGET = "llvm"


def matmul(n: int):
    """An n x n x n matmul PrimFunc module: each ``n`` is a distinct task."""
    a = te.placeholder((n, n), "float32", name="A")
    b = te.placeholder((n, n), "float32", name="B")
    k = te.reduce_axis((0, n), name="k")
    c = te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    return tvm.IRModule({"main": te.create_prim_func([a, b, c]).with_attr("global_symbol", "main")})


def split_inner(mod, factor: int):
    """A real schedule of ``mod``: its column loop split by ``factor`` (records told apart by it)."""
    sch = s_tir.Schedule(mod)
    _, j, _ = sch.get_loops(sch.get_sblock("C"))
    sch.split(j, [None, factor])
    return sch


def commit(folder, rows):
    """Commit ``rows`` of (module, schedule, run seconds or None for a failed trial) into the
    JSON database in ``folder``; returns the database."""
    folder.mkdir(parents=True, exist_ok=True)
    database = JSONDatabase(str(folder / WORKLOADS), str(folder / RECORDS), allow_missing=True,
                            module_equality=MODULE_EQUALITY)
    target = tvm.target.Target(TARGET)
    for mod, sch, run_secs in rows:
        workload = database.commit_workload(mod)
        database.commit_tuning_record(TuningRecord(sch.trace, workload, run_secs, target,
                                                   ArgInfo.from_prim_func(mod["main"])))
    return database


def applied_schedule(folder, mod):
    """The kernel the database in ``folder`` gives ``mod`` (its best record's trace replayed), or None."""
    database = JSONDatabase(str(folder / WORKLOADS), str(folder / RECORDS), allow_missing=False,
                            module_equality=MODULE_EQUALITY)
    if not database.has_workload(mod):
        return None
    sch = database.query_schedule(mod, tvm.target.Target(TARGET), "main")
    return None if sch is None else sch.mod
