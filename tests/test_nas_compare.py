"""The teacher/student comparison's rows and ratios (the timing itself is exercised by the pipeline
benchmark, not asserted here)."""
import pytest

from canao.bench.engines import LiteRTEngine, TVMEngine
from canao.nas.compare import ROWS, _engine, speedups


def test_rows_map_to_the_engines_a_user_would_ship():
    assert isinstance(_engine("teacher-litert"), LiteRTEngine)
    for row in ("teacher", "student"):
        engine = _engine(row)
        assert isinstance(engine, TVMEngine) and engine.pipeline == "canao" and not engine.options
    assert _engine("student-int8").options == {"quantize": "int8"}
    assert set(ROWS) == {"teacher", "student", "student-int8", "teacher-litert"}


def test_speedups_are_ratios_of_the_timed_rows_only():
    lat = lambda p50, low: {"latency": {"p50_ms": p50, "min_ms": low}}  # noqa: E731
    out = {"teacher": lat(8.0, 7.6), "student": lat(2.0, 1.9), "student-int8": lat(1.0, 0.95),
           "teacher-litert": {"status": "unavailable: no runtime"}}
    s = speedups(out)
    assert s["student_vs_teacher_p50"] == pytest.approx(4.0) and s["student_vs_teacher_min"] == pytest.approx(4.0)
    assert s["student_int8_vs_teacher_p50"] == pytest.approx(8.0)
    assert not any(k.startswith("student_int8_vs_teacher_litert") for k in s)  # LiteRT row not timed
