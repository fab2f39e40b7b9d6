"""canao.measure: the one measurement core (``core``) and visible degradation (``report``).

See :mod:`canao.measure.core` for the timing method (warm-up, interleaved rounds, a reference
workload timed in the same rounds, robust statistics, the noise gate, the load check) and
:mod:`canao.measure.report` for the build report and ``CanaoWarning``.
"""
from .core import (MEASURE_VERSION, REFERENCE, Gate, Reference, Row, assert_quiet_machine, busy_override,
                   calibrate_reference, default_max_load, default_reference, load_average, measure,
                   measure_rounds, reference_baseline, reference_drift, robust_stats, time_call)
from .report import BuildReport, CanaoWarning, Degradation, collecting, context, record

__all__ = ["MEASURE_VERSION", "REFERENCE", "Gate", "Reference", "Row", "assert_quiet_machine", "busy_override",
           "calibrate_reference", "default_max_load", "default_reference", "load_average", "measure",
           "measure_rounds", "reference_baseline", "reference_drift", "robust_stats", "time_call",
           "BuildReport", "CanaoWarning", "Degradation", "collecting", "context", "record"]
