"""TVM's CPU thread pool matches the build targets' num-cores (cpu_count) once canao is imported,
unless the user set TVM_NUM_THREADS: TVM's own default halves hardware_concurrency() on x86, which
ran every in-process measurement on one core of a 2-vCPU machine without SMT."""
import os
import subprocess
import sys

PROBE = ("import canao, tvm; from canao.codegen import resolve_target; "
         "print(tvm.get_global_func('runtime.NumThreads')(), resolve_target('x86').tvm_target().attrs['num-cores'])")


def _probe(env):
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return [int(x) for x in out.stdout.split()[-2:]]


def test_pool_matches_target_cores():
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    pool, cores = _probe(env)
    assert pool == cores == (os.cpu_count() or 1)


def test_user_choice_is_kept():
    env = dict(os.environ, TVM_NUM_THREADS="1")
    assert _probe(env)[0] == 1
