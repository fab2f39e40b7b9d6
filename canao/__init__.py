"""CANAO: compiler-aware optimization of Transformer models on Apache TVM (Relax).

Data flow: import (canao.frontends) -> fuse (canao.fusion) -> tune + build (canao.codegen)
-> measure (canao.bench, canao.android_runner) -> search (canao.nas).
"""
__version__ = "0.1.0"
