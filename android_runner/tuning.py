"""MetaSchedule on a device farm: a builder that links for the phone and a runner on the tracker.

How MetaSchedule reaches devices (tvm.s_tir.meta_schedule, read from TVM 0.27's source):
- ``RPCConfig(tracker_host, tracker_port, tracker_key, session_priority, session_timeout_sec)``:
  every measurement opens its own session through the tracker; ``session_timeout_sec`` is also the
  client-side limit after which the runner's PopenPool kills that measurement ("RPCRunner:
  Timeout") — a dropped or frozen device costs one failed candidate, never a hang.
- ``RPCRunner(rpc_config, evaluator_config, max_workers)``: ``max_workers`` sessions at a time,
  so set it to the number of devices behind the key to fan candidates out over all of them.
- ``EvaluatorConfig(number, repeat, min_repeat_ms, enable_cpu_cache_flush)``: what
  ``time_evaluator`` runs on the device.
- The builder must link an aarch64 ``.so`` on the host: the default export writes a ``.tar`` of
  objects that the device is expected to link itself, and a phone (or the emulated device) has
  no compiler. ``cross_builder`` exports with the cross compiler instead.

codegen/tuning.py calls ``metaschedule_runner`` and ``cross_builder``; nothing here tunes.
"""
import os
import tempfile
from typing import Optional

from canao.errors import CanaoError

from .emulator import parse_address
from .session import tracker_summary

CROSS_CXX_ENV = "CANAO_TUNING_CXX"  # how the builder's worker processes learn the cross compiler


def export_with_cross_compiler(mod) -> str:
    """MetaSchedule f_export: link ``mod`` into a device .so with the cross compiler (runs in the
    builder's worker process, so the compiler comes from the environment)."""
    cxx = os.environ.get(CROSS_CXX_ENV) or _default_cross_compiler()
    path = os.path.join(tempfile.mkdtemp(prefix="canao-ms-"), "candidate.so")
    mod.export_library(path, cc=cxx)
    return path


def build_without_intrinsic_registry(mod, target, _params=None):
    """MetaSchedule f_build like TVM's default, minus ``import tvm.s_tir.tensor_intrin``.

    Why: that import parses ~500 TVMScript intrinsics and took 80 s per fresh builder worker on
    this 2-core machine under load. A tensorized candidate already carries the intrinsic's body,
    so plain (and NEON-vectorized) candidates build the same without it; keep the default
    (``lean=False``) when tuning with tensor intrinsics you have not checked this way.
    """
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)


def _default_cross_compiler() -> str:
    """The android-arm64 target's linker: the NDK's clang when ANDROID_NDK_HOME is set, else g++."""
    from canao.codegen.targets import resolve_target

    return resolve_target("android-arm64").cross_compiler


def cross_builder(cross_compiler: Optional[str] = None, max_workers: Optional[int] = None,
                  timeout_sec: float = 120.0, lean: bool = False):
    """A ``LocalBuilder`` whose artifacts are device libraries (aarch64 ``.so`` by default)."""
    from tvm.s_tir.meta_schedule.builder import LocalBuilder

    # inherited by the builder's Popen workers, which start now
    os.environ[CROSS_CXX_ENV] = cross_compiler or _default_cross_compiler()
    return LocalBuilder(max_workers=max_workers, timeout_sec=timeout_sec, f_export=export_with_cross_compiler,
                        f_build=build_without_intrinsic_registry if lean else None)


def devices_behind(tracker: str, key: str) -> int:
    """Servers registered under ``key`` (free or busy), as MetaSchedule counts them."""
    servers = tracker_summary(tracker).get("server_info", [])
    return sum(1 for item in servers if str(item.get("key", "")).split(":", 1)[-1] == key)


def metaschedule_runner(tracker: str, key: str, max_workers: Optional[int] = None,
                        session_timeout_sec: int = 120, number: int = 3, repeat: int = 1,
                        min_repeat_ms: int = 0, priority: int = 1, enable_cpu_cache_flush: bool = False):
    """A MetaSchedule ``RPCRunner`` measuring on every device of ``key`` behind ``tracker``.

    ``max_workers`` defaults to the number of devices registered under ``key`` (one measurement
    per device at a time). Under qemu give ``session_timeout_sec`` room for ``import``-free but
    slow emulated runs (the default 120 s is plenty for single kernels).
    """
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, RPCConfig, RPCRunner

    host, port = parse_address(tracker, "--tracker")
    if max_workers is None:
        max_workers = devices_behind(tracker, key)
        if max_workers < 1:
            raise CanaoError(f"no device with key '{key}' is registered at tracker {tracker}",
                             f"start one: canao device start-emulated --tracker {tracker} --key {key}")
    rpc_config = RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key, session_priority=priority,
                           session_timeout_sec=int(session_timeout_sec))
    evaluator = EvaluatorConfig(number=number, repeat=repeat, min_repeat_ms=min_repeat_ms,
                                enable_cpu_cache_flush=enable_cpu_cache_flush)
    return RPCRunner(rpc_config=rpc_config, evaluator_config=evaluator, max_workers=max_workers)
