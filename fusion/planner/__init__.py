"""LP-Fusion's fusion planner: DNNFusion mapping types, the producer x consumer table, grouping,
and outlining into Primitive functions for FuseTIR."""
from .kernel_graph import KernelGraph
from .grouping import EdgeDecision, plan_groups
from .mapping import Mapping, classify
from .table import GREEN, RED, YELLOW, decide

__all__ = ['KernelGraph', 'EdgeDecision', 'plan_groups', 'Mapping', 'classify', 'GREEN', 'RED', 'YELLOW', 'decide']
