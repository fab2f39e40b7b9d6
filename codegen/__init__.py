"""Tune + build: named targets, the Relax pipeline stages, and compiled artifacts."""
from .targets import TargetSpec, list_targets, resolve_target

__all__ = ["TargetSpec", "list_targets", "resolve_target"]
