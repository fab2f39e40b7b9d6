"""LP-Fusion's graph rewrites on Relax operators (before legalization)."""
from .algebra import ALGEBRA_RULES
from .base import Match, RewriteRecord, Rule, apply_rule, rule_pass

__all__ = ['ALGEBRA_RULES', 'Match', 'RewriteRecord', 'Rule', 'apply_rule', 'rule_pass']
