"""Whether a scheduled kernel computes what the reference kernel does, checked by running both
here on the same random inputs. A schedule is only a candidate if it does: a register tile that
straddles a reshape/transpose epilogue's rows gave wrong results (MiniLM's QKV projection)."""
from typing import Optional

RTOL = 1e-4  # relative: the kernels differ in the order of float32 sums, not in what they compute
SEED = 0  # the same inputs for every check, so a verdict can be reproduced


def random_args(func, seed: int):
    """Inputs (and output buffers) for the PrimFunc ``func``: normal floats, 0/1 integers and
    booleans, so indices and masks stay in range."""
    import numpy as np
    import tvm
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    rng = np.random.default_rng(seed)
    out = []
    for info in ArgInfo.from_prim_func(func):
        shape, dtype = [int(d) for d in info.shape], str(info.dtype)
        if "float" in dtype:
            value = rng.standard_normal(shape).astype(dtype)
        elif dtype == "bool":
            value = rng.integers(0, 2, size=shape).astype(bool)
        else:
            value = rng.integers(0, 2, size=shape).astype(dtype)
        out.append(tvm.runtime.tensor(value))
    return out


def agrees(mod, reference_mod, target, name: Optional[str] = None) -> bool:
    """Whether ``mod`` computes what ``reference_mod`` does (both one PrimFunc "main", built for
    ``target`` here, run on the same random inputs). A kernel that fails to build or run does
    not agree; the failure is recorded (``variant-check`` in the build report) under ``name``."""
    import numpy as np
    import tvm

    try:
        got_lib, want_lib = tvm.tirx.build(mod, target=target), tvm.tirx.build(reference_mod, target=target)
        got, want = random_args(mod["main"], SEED), random_args(reference_mod["main"], SEED)
        got_lib["main"](*got)
        want_lib["main"](*want)
    except Exception as exc:  # a candidate that does not build or run is no candidate: recorded
        from canao.measure.report import VARIANT_CHECK, record

        record(VARIANT_CHECK, name or _symbol(mod), exc)
        return False
    if len(got) != len(want):
        return False
    for a, b in zip(got, want):
        a, b = a.numpy(), b.numpy()
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype == bool or b.dtype == bool:
            if not np.array_equal(a, b):
                return False
        elif not np.allclose(a, b, rtol=RTOL, atol=RTOL * max(1.0, float(np.abs(b).max())), equal_nan=True):
            return False
    return True


def _symbol(mod) -> str:
    """A label for the build report when the caller gave none: the kernel's global symbol."""
    try:
        attrs = mod["main"].attrs
        if attrs is not None and "global_symbol" in attrs:
            return f"candidate ({attrs['global_symbol']})"
    except Exception:  # noqa: BLE001 - a label only
        pass
    return "candidate"
