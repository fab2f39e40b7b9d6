"""The default CPU schedule rules, most specific first (ApplyDefaultSchedule takes the first hit)."""
from .attention import Attention
from .fallback import ParallelFallback
from .injective import Injective
from .matmul import Matmul
from .reduction import RowReduction


def default_rules():
    return [Attention(), Matmul(), RowReduction(), Injective(), ParallelFallback()]


__all__ = ["Attention", "Matmul", "RowReduction", "Injective", "ParallelFallback", "default_rules"]
