"""What a build is asked to do: the options every canao pipeline stage reads, as one typed value.

    build(imported, spec, "canao", options=BuildOptions(yellow="default", quantize="int8"))
    build(imported, spec, "canao", options={"yellow": "default"})   # a dict still works

Frozen so that no stage can change what the next one sees (results come back in the
``CompiledModel``, never through the options), and typed so that a misspelt key is an error
instead of a silently ignored setting.
"""
from dataclasses import dataclass, fields, replace
from typing import Mapping, Optional, Tuple

from canao.errors import CanaoError


@dataclass(frozen=True)
class BuildOptions:
    # fusion/__init__.py: False leaves LP-Fusion out (no rewrite stage; TVM's FuseOps + FuseTIR
    # fuse instead), e.g. `canao profile --compare stock-fusion`.
    fusion: bool = True
    # fusion/__init__.py -> LPFuse: how legal-but-uncertain (yellow) fusions are settled: "measure"
    # on the target (cached), the "default" policy, or all "fuse" / "split".
    yellow: str = "measure"
    # fusion/__init__.py -> LPRewrite: merge parallel Q/K/V matmuls into one. Off: measured ~1.2 ms
    # slower per MiniLM inference (x86, default schedules) than three GEMMs.
    merge_parallel_matmul: bool = False
    # fusion/planner/attention.py: propose merging the scores + softmax kernel with the P.V GEMM
    # (a yellow edge, settled like the others); False keeps them apart.
    fuse_attention: bool = True
    # fusion/__init__.py -> LPRewrite's polynomial rules: the weights hold no +-inf / NaN, so rules
    # guarded on finite weights may fire. None: build() checks the weights (for_weights).
    finite_weights: Optional[bool] = None
    # fusion/quantize (rewrite slot) and codegen/schedules/int8.py: "int8" or "w4" weight
    # quantization; None keeps fp32.
    quantize: Optional[str] = None
    # codegen/schedules/int8.py: the int8 kernel schedules of a quantized build (False: plain defaults).
    int8_schedules: bool = True
    # codegen/schedules/apply.py, int8.py: vectorisable erf/exp in CPU kernels (schedule prelude).
    fast_math: bool = True
    # codegen/schedules/apply.py: the default CPU schedules (schedule slot, order 90).
    default_schedules: bool = True
    # codegen/schedules/prepack.py via codegen/build.py: GEMM weights packed at build time in the
    # [N/nr, K, nr] panels the Matmul rule's tile streams (False: weights keep their layout).
    prepack_weights: bool = True
    # codegen/tuning/apply.py: a tuning database folder applied first in the schedule slot
    # (order 10); codegen/gpu.py builds apply it before DLight.
    tuning_db: Optional[str] = None

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type is bool and not isinstance(value, bool):
                raise CanaoError(f"build option {f.name} must be True or False, not {value!r}")
        if self.finite_weights is not None and not isinstance(self.finite_weights, bool):
            raise CanaoError(f"build option finite_weights must be True, False or None, not {self.finite_weights!r}")
        if self.tuning_db is not None and not isinstance(self.tuning_db, str):  # a Path: keep it printable / hashable
            object.__setattr__(self, "tuning_db", str(self.tuning_db))
        if self.quantize == "":
            object.__setattr__(self, "quantize", None)

    @classmethod
    def names(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, options: Mapping) -> "BuildOptions":
        """The options a plain dict names (what older callers, tests and nas/ pass)."""
        unknown = [k for k in options if k not in cls.names()]
        if unknown:
            raise CanaoError(f"unknown build option '{unknown[0]}'", f"use one of {', '.join(cls.names())}")
        return cls(**dict(options))

    @classmethod
    def coerce(cls, options) -> "BuildOptions":
        """``options`` as BuildOptions: None -> the defaults, a dict -> from_dict, BuildOptions as is."""
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        if isinstance(options, Mapping):
            return cls.from_dict(options)
        raise CanaoError(f"build options must be BuildOptions or a dict, not {type(options).__name__}")

    def replace(self, **changes) -> "BuildOptions":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def for_weights(self, params) -> "BuildOptions":
        """``finite_weights`` settled from the weights when no caller vouched either way: what the
        polynomial rules may assume is a fact about these weights, checked once per build."""
        if self.finite_weights is not None:
            return self
        import numpy as np

        return self.replace(finite_weights=all(bool(np.isfinite(p).all()) for p in params
                                               if np.asarray(p).dtype.kind == "f"))

    def fingerprint_items(self):
        """(name, repr(value)) of every option, sorted: what a stage without a fingerprint of its
        own is keyed on (every option may change its code)."""
        return sorted((f.name, repr(getattr(self, f.name))) for f in fields(self))
