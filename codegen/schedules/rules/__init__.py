"""The default CPU schedule rules, most specific first (ApplyDefaultSchedule takes the first hit)."""
from .fallback import ParallelFallback
from .injective import Injective
from .matmul import Matmul
from .reduction import RowReduction


def default_rules():
    return [Matmul(), RowReduction(), Injective(), ParallelFallback()]


__all__ = ["Matmul", "RowReduction", "Injective", "ParallelFallback", "default_rules"]
