"""Default CPU schedules in the DLight style: good kernels with zero tuning trials.

Registered in the canao pipeline's "schedule" slot at order 90 (after a tuning database at 10),
so every PrimFunc a tuning run did not cover still gets a parallel, vectorised, register-tiled
schedule. Options (``codegen.options.BuildOptions``): ``default_schedules=False`` turns the stage
off, ``fast_math=False`` keeps libm erf/exp. See docs/schedules.md.
"""
from canao.codegen.pipeline import register_stage

from .apply import SCHEDULED_ATTRS, default_schedule_pass, fast_math_factory, is_scheduled, stage_factory
from .prepack import mark_weights_factory
from .fast_math import erf_f32, exp_f32, vectorizable_math_pass
from .rules import Injective, Matmul, ParallelFallback, RowReduction, default_rules
from .target_traits import CPUTraits, cpu_traits

register_stage("schedule", "fast-math", fast_math_factory, order=5)  # prelude: tuning sees it too
register_stage("schedule", "mark-weights", mark_weights_factory, order=85)  # see prepack.py
register_stage("schedule", "default-schedules", stage_factory, order=90)

__all__ = ["default_schedule_pass", "stage_factory", "is_scheduled", "SCHEDULED_ATTRS", "default_rules",
           "Matmul", "RowReduction", "Injective", "ParallelFallback", "CPUTraits", "cpu_traits",
           "vectorizable_math_pass", "erf_f32", "exp_f32"]
