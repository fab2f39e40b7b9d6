"""GPU targets (CUDA, OpenCL on Adreno / Mali): DLight default schedules, kernel source, and
whether this machine can run the result.

Every GPU kernel must be bound to threads before code generation, so an untuned GPU build
needs a schedule for each PrimFunc; DLight's GPU rules give one (matmul, GEMV, reductions,
and a fallback for the rest). The canao pipeline applies them in the schedule slot after the
tuning database (order 90), so tuned kernels win where they exist. TVM's stock GPU backends
already run DLight right after FuseTIR; ``build_gpu`` switches that copy off for the build, so
the order "tuning database, then defaults" holds (and Adreno also gets DLight's Matmul rule,
which the stock Adreno pipeline leaves out).
"""
from typing import Optional, Tuple

from canao.errors import CanaoError

from .pipeline import register_stage

GPU_DEVICES = ("cuda", "opencl", "vulkan", "metal", "rocm")
STOCK_SCHEDULE_PASS = "ApplyDefaultSchedule"  # the name of DLight's pass in the stock backends
STAGE_NAME = "gpu-default-schedules"
STAGE_ORDER = 90


def is_gpu(target) -> bool:
    return target.kind.name in GPU_DEVICES


def default_schedule_rules():
    """DLight's GPU rules, most specific first (the first rule that applies schedules the kernel)."""
    from tvm.s_tir import dlight as dl

    return [dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.LowBatchGEMV(), dl.gpu.Reduction(),
            dl.gpu.GeneralReduction(), dl.gpu.Fallback()]


def gpu_default_schedules():
    """A pass giving every unscheduled PrimFunc a DLight GPU schedule.

    Rules are tried one kernel at a time and a rule that fails on a kernel (DLight's Matmul
    asserts on some fused epilogues, e.g. matmul -> reshape -> transpose) passes it on to the
    next one, down to the Fallback rule. Named apart from the stock backends' DLight pass, so
    that one can be switched off without this one.
    """
    import tvm

    @tvm.transform.module_pass(opt_level=0, name="CanaoGPUDefaultSchedules")
    def _schedule(mod, ctx):
        rules = default_schedule_rules()
        updates = {}
        for gvar, func in mod.functions_items():
            if isinstance(func, tvm.tirx.PrimFunc) and not _is_scheduled(func):
                scheduled = _first_rule_that_applies(gvar, func, rules)
                if scheduled is not None:
                    updates[gvar] = scheduled
        for gvar, func in updates.items():
            mod[gvar] = func
        return mod

    return _schedule


def _is_scheduled(func) -> bool:
    return bool(func.attrs is not None and func.attrs.get("tirx.is_scheduled", False))


def _first_rule_that_applies(gvar, func, rules):
    import tvm
    from tvm.s_tir import dlight as dl

    target = tvm.target.Target.current(allow_none=False)
    for rule in rules:
        try:
            out = dl.ApplyDefaultSchedule(rule)(tvm.IRModule({gvar: func}))[gvar]
        except Exception:  # this rule cannot schedule this kernel; the next one may
            continue
        if _is_scheduled(out) and _lowers(out, target):
            return out
    return None


def _lowers(func, target) -> bool:
    """Whether a scheduled kernel survives TIR lowering (a rule can produce a schedule that
    does not, e.g. a buffer used before its definition); checked per kernel in milliseconds."""
    import tvm
    from tvm.tirx.compilation_pipeline import get_default_tir_pipeline

    kind_target = tvm.target.Target(func.attrs.get("target", target)) if func.attrs is not None else target
    one = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    try:
        pipeline = get_default_tir_pipeline(kind_target)
        pipeline = pipeline[0] if isinstance(pipeline, tuple) else pipeline  # (lower, host, device) or one pass
        with kind_target:
            pipeline(tvm.tirx.transform.BindTarget(kind_target)(one))
        return True
    except Exception:
        return False


def _stage(target, options):
    return gpu_default_schedules() if is_gpu(target) else None


register_stage("schedule", STAGE_NAME, _stage, order=STAGE_ORDER)


def _without_stock_schedules():
    """A PassContext like the current one with the stock backends' DLight pass disabled."""
    import tvm

    current = tvm.transform.PassContext.current()
    return tvm.transform.PassContext(opt_level=current.opt_level, config=dict(current.config),
                                     required_pass=list(current.required_pass),
                                     disabled_pass=list(current.disabled_pass) + [STOCK_SCHEDULE_PASS])


def build_gpu(imported, target_spec, pipeline: str = "canao", options: Optional[dict] = None):
    """Build ``imported`` for a GPU target with DLight default schedules (after the tuning
    database when ``options.tuning_db`` is set; BuildOptions or a dict); returns a CompiledModel."""
    from .build import build

    if target_spec.device not in GPU_DEVICES:
        raise CanaoError(f"target {target_spec.name} is not a GPU target", "use cuda, opencl-adreno or opencl-mali")
    if pipeline != "canao":  # the stock pipeline keeps TVM's own DLight step
        return build(imported, target_spec, pipeline, options=options)
    with _without_stock_schedules():
        compiled = build(imported, target_spec, pipeline, options=options)
    unscheduled = unscheduled_kernels(compiled.mod)
    if unscheduled:  # they would silently run on the host, not the GPU
        raise CanaoError(f"no GPU schedule for {len(unscheduled)} kernel(s) on {target_spec.name}: "
                         f"{', '.join(unscheduled[:5])}", "tune them (canao tune) or report the model")
    return compiled


def unscheduled_kernels(mod):
    """Names of PrimFuncs with no schedule (no thread binding) in a module."""
    import tvm

    return sorted(gv.name_hint for gv, f in mod.functions.items()
                  if isinstance(f, tvm.tirx.PrimFunc) and not _is_scheduled(f))


def device_modules(executable):
    """The device-code modules inside a built executable (what ships the GPU kernels)."""
    stack, found = [executable.mod if hasattr(executable, "mod") else executable], []
    while stack:  # imports form a tree: host module -> device modules
        module = stack.pop()
        if module.kind in GPU_DEVICES:
            found.append(module)
        stack.extend(module.imports)
    return found


def kernel_source(compiled) -> str:
    """The generated GPU source (CUDA C or OpenCL C) of a CompiledModel or VM executable."""
    executable = getattr(compiled, "executable", compiled)
    modules = device_modules(executable)
    if not modules:
        raise CanaoError("the build has no GPU device module", "build for a GPU target: cuda, opencl-adreno, opencl-mali")
    return "\n".join(m.inspect_source() for m in modules)


def can_run(target_spec) -> Tuple[bool, str]:
    """(True, "") when this machine can execute builds for ``target_spec``, else (False, why)."""
    import platform

    import tvm

    if target_spec.device == "cpu":
        if target_spec.arch == platform.machine():
            return True, ""
        return False, f"{target_spec.arch} code: run it on the device (canao's android runner, TVM RPC)"
    device = target_spec.device
    if not tvm.runtime.enabled(device):
        where = {"cuda": "a TVM runtime built with USE_CUDA on a machine with an NVIDIA GPU",
                 "opencl": "the phone through TVM RPC (TVM's Android RPC app has OpenCL)"}.get(
                     device, f"a TVM runtime built with {device}")
        return False, (f"this TVM runtime cannot run {device} (the PyPI wheel generates the code only); "
                       f"run it on {where}")
    if not tvm.device(device, 0).exist:
        return False, f"no {device} device on this machine"
    return True, ""
