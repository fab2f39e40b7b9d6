"""Compiler-aware neural architecture search: weight-shared search spaces (``canao.nas.spaces``),
latency predictors and the evolutionary search that calls them."""
