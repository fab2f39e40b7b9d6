"""CANAO: compiler-aware optimization of Transformer models on Apache TVM (Relax).

Data flow: import (canao.frontends) -> fuse (canao.fusion) -> tune + build (canao.codegen)
-> measure (canao.bench, canao.android_runner) -> search (canao.nas).
"""
import os as _os

__version__ = "0.1.0"

# TVM sizes its CPU thread pool from TVM_NUM_THREADS, else from half of hardware_concurrency() on x86
# (it assumes two hyper-threads per core). On a machine without SMT (e.g. a 2-vCPU VM) that pool has
# one thread while every build's target says num-cores = cpu_count(), so whatever ran TVM code
# in-process without the CLI (NAS latency rows, the NAS comparison, yellow-edge measurements from the
# Python API) ran on one core. The pool is made to match the targets unless the user chose a size.
_os.environ.setdefault("TVM_NUM_THREADS", str(_os.cpu_count() or 1))
