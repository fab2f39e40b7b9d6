"""Visible degradation: what a build silently did worse than it should, recorded and warned.

A schedule rule that raises, a kernel left unscheduled, a fusion measurement that failed, a
tuning baseline or variant check that failed: each used to be logged at debug level or
swallowed, and the user saw a slower model and no reason. Each is now a :class:`Degradation`,
appended to every :class:`BuildReport` being collected (``codegen.build.build`` collects one
per build: ``CompiledModel.report``) and issued once as a :class:`CanaoWarning`.

    with collecting() as report:      # nestable; record() reaches every active report
        ...
    report.to_json()
"""
import contextlib
import contextvars
import warnings
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Tuple


class CanaoWarning(UserWarning):
    """A build or measurement went on in a degraded way (slower kernels, an unmeasured choice)."""


# kinds, grouped as the report lists them
UNSCHEDULED = "unscheduled"  # a kernel no schedule rule scheduled (it runs as a plain loop nest)
SCHEDULE_RULE = "schedule-rule"  # a rule raised on a kernel (another rule, or none, took it)
FUSION_MEASUREMENT = "fusion-measurement"  # a yellow edge could not be measured (decided unmeasured)
PLANNER_ASSERTION = "planner-assertion"  # the planner's own consistency check failed while measuring
TUNING_BASELINE = "tuning-baseline"  # a kernel's default schedule failed while tuning: plain kernel timed
VARIANT_CHECK = "variant-check"  # a tile variant / tuned candidate failed to build or run in the check
TUNING_MEASUREMENT = "tuning-measurement"  # a candidate failed to build or time in the tuning runner
WEIGHT_PREPACK = "weight-prepack"  # lifting the packed weights failed: the build was redone unpacked
LEFT_FP32 = "left-fp32"  # --quantize: a matmul the integer path cannot take stayed fp32

GROUPS = {"unscheduled": (UNSCHEDULED,), "schedule_rule_errors": (SCHEDULE_RULE,),
          "fusion_measurement_failures": (FUSION_MEASUREMENT, PLANNER_ASSERTION),
          "tuning_failures": (TUNING_BASELINE, VARIANT_CHECK, TUNING_MEASUREMENT),
          "left_fp32": (LEFT_FP32,)}


@dataclass(frozen=True)
class Degradation:
    kind: str
    where: str  # the kernel, task or fusion edge
    why: str
    context: str = "build"  # what was running: "build", "fusion measurement of ...", "tuning"

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class BuildReport:
    """Everything a build degraded on; empty when nothing did."""
    degradations: List[Degradation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.degradations

    def of(self, *kinds: str) -> List[Degradation]:
        return [d for d in self.degradations if d.kind in kinds]

    @property
    def unscheduled(self) -> List[Degradation]:
        return self.of(UNSCHEDULED)

    @property
    def schedule_rule_errors(self) -> List[Degradation]:
        return self.of(SCHEDULE_RULE)

    @property
    def fusion_measurement_failures(self) -> List[Degradation]:
        return self.of(*GROUPS["fusion_measurement_failures"])

    @property
    def tuning_failures(self) -> List[Degradation]:
        return self.of(*GROUPS["tuning_failures"])

    def add(self, item: Degradation) -> bool:
        if item in self.degradations:
            return False
        self.degradations.append(item)
        return True

    def to_json(self) -> dict:
        out: Dict[str, object] = {"ok": self.ok}
        for group, kinds in GROUPS.items():
            out[group] = [d.to_json() for d in self.of(*kinds)]
        return out

    def summary(self) -> str:
        if self.ok:
            return "no degradations"
        return "\n".join(f"{d.kind}: {d.where}: {d.why}" + (f" [{d.context}]" if d.context != "build" else "")
                         for d in self.degradations)


_ACTIVE: contextvars.ContextVar[Tuple[BuildReport, ...]] = contextvars.ContextVar("canao_reports", default=())
_CONTEXT: contextvars.ContextVar[str] = contextvars.ContextVar("canao_report_context", default="build")


@contextlib.contextmanager
def collecting(report: BuildReport = None):
    """Collect degradations recorded inside the block into ``report`` (a new one by default)."""
    report = report if report is not None else BuildReport()
    token = _ACTIVE.set(_ACTIVE.get() + (report,))
    try:
        yield report
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def context(name: str):
    """Label degradations recorded inside the block (e.g. "fusion measurement of add+layer_norm")."""
    token = _CONTEXT.set(name)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> str:
    return _CONTEXT.get()


def record(kind: str, where: str, why: str, warn: bool = True, stacklevel: int = 2) -> Degradation:
    """Record a degradation in every active report and warn (CanaoWarning) unless every active
    report already had it (a kernel failing the same way twice warns once per build)."""
    item = Degradation(kind, str(where), _one_line(why), _CONTEXT.get())
    reports = _ACTIVE.get()
    new = [r.add(item) for r in reports]
    if warn and (not reports or any(new)):
        where_txt = f" ({item.context})" if item.context != "build" else ""
        warnings.warn(f"CANAO degraded: {kind} at {item.where}: {item.why}{where_txt}", CanaoWarning,
                      stacklevel=stacklevel + 1)
    return item


def _one_line(why) -> str:
    text = str(why).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(why, BaseException):
        first = f"{type(why).__name__}: {first}" if first else type(why).__name__
    return first[:300]
