"""The machine's peak FLOP/s, measured in the same run as the benchmark (what '% of peak' is against).

The roofline is the FMA peak: a register-resident kernel (C, built by the system ``cc`` with
``-march=native`` and cached) keeps ``ACCUMULATORS`` independent vector FMA chains per thread, enough
to cover FMA latency x issue ports on current x86 and Arm cores, on ``threads`` threads at once.
Nothing touches memory, so it is the compute ceiling no engine can pass. A 1024^3 GEMM with
PyTorch's BLAS is kept as a second, practical figure, labelled as such.
"""
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

ACCUMULATORS = 12

FMA_SOURCE = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#if defined(__AVX512F__)
#define VBYTES 64
#elif defined(__AVX__)
#define VBYTES 32
#else
#define VBYTES 16
#endif
#define NACC %(acc)d
typedef float vf __attribute__((vector_size(VBYTES)));
static volatile float seed_b = 1.0000001f, seed_c = 1e-7f;
static long iters;
volatile float sinks[256];  /* read by nobody, but volatile: the work is kept */

static void *work(void *arg) {
  long id = (long)arg;
  vf a[NACC], b, c;
  for (int k = 0; k < VBYTES / 4; k++) { b[k] = seed_b; c[k] = seed_c; }
  for (int j = 0; j < NACC; j++) for (int k = 0; k < VBYTES / 4; k++) a[j][k] = (float)(j + k + id);
  for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
    for (int j = 0; j < NACC; j++) a[j] = a[j] * b + c;   /* one FMA each: -ffp-contract=fast */
  }
  float s = 0;
  for (int j = 0; j < NACC; j++) for (int k = 0; k < VBYTES / 4; k++) s += a[j][k];
  sinks[id & 255] = s;
  return NULL;
}

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  int reps = argc > 2 ? atoi(argv[2]) : 5;
  iters = argc > 3 ? atol(argv[3]) : 20000000L;
  pthread_t tid[256];
  if (threads < 1 || threads > 256) return 2;
  double best = 0;
  for (int r = 0; r < reps; r++) {
    double t0 = now();
    for (long t = 0; t < threads; t++) pthread_create(&tid[t], NULL, work, (void *)t);
    for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    double dt = now() - t0;
    double gflops = (double)iters * NACC * (VBYTES / 4) * 2.0 * threads / dt / 1e9;
    if (gflops > best) best = gflops;
  }
  printf("%%.3f %%d %%d\n", best, VBYTES * 8, NACC);
  return 0;
}
""" % {"acc": ACCUMULATORS}


class PeakUnavailable(Exception):
    """No C compiler (or it failed): the FMA roofline cannot be measured here."""


def _cache_dir() -> Path:
    return Path(os.environ.get("CANAO_CACHE", Path.home() / ".cache" / "canao")) / "peak"


def fma_binary() -> Path:
    """The FMA kernel built for this machine (cached by source, compiler and flags)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise PeakUnavailable("no C compiler (cc) to build the FMA roofline kernel: apt-get install gcc")
    flags = ["-O2", "-march=native", "-ffp-contract=fast", "-pthread"]
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise PeakUnavailable(f"{cc} --version failed: {exc}") from exc
    key = hashlib.sha256("\n".join([FMA_SOURCE, cc, version, *flags, os.uname().machine]).encode()).hexdigest()[:16]
    binary = _cache_dir() / f"fma-{key}"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    src = binary.with_suffix(".c")
    src.write_text(FMA_SOURCE)
    tmp = binary.with_name(f".{binary.name}.{os.getpid()}")
    proc = subprocess.run([cc, *flags, str(src), "-o", str(tmp)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise PeakUnavailable(f"building the FMA kernel failed: {(proc.stderr or proc.stdout).strip()[:300]}")
    os.replace(tmp, binary)
    return binary


def measure_fma_gflops(threads: int, reps: int = 5, seconds_per_rep: float = 0.1) -> dict:
    """fp32 FMA peak on ``threads`` threads: {"gflops", "vector_bits", "accumulators", "threads"}."""
    binary = fma_binary()

    def run(iters: int):
        out = subprocess.run([str(binary), str(threads), str(reps), str(iters)], capture_output=True, text=True,
                             timeout=120)
        if out.returncode != 0:
            raise PeakUnavailable(f"the FMA kernel exited {out.returncode}")
        gflops, bits, acc = out.stdout.split()
        return float(gflops), int(bits), int(acc)

    probe_iters = 200_000
    probe = run(probe_iters)
    flop_per_iter = ACCUMULATORS * probe[1] / 32 * 2 * threads
    iters = max(probe_iters, int(seconds_per_rep * probe[0] * 1e9 / flop_per_iter))
    gflops, bits, acc = run(iters)
    gflops = max(gflops, probe[0])
    return {"gflops": gflops, "vector_bits": bits, "accumulators": acc, "threads": threads,
            "method": f"register-resident fp32 FMA kernel ({acc} accumulators x {bits}-bit vectors per thread, "
                      f"cc -march=native), best of {reps}"}


def measure_gemm_gflops(threads: int, n: int = 1024, repeats: int = 10) -> float:
    """Best of ``repeats`` n^3 fp32 matmuls with PyTorch's BLAS on ``threads`` threads (a practical
    GEMM figure, not the roofline)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(old)
    return 2 * n ** 3 / best / 1e9


def measure(threads: int, gemm: bool = True) -> dict:
    """Both figures: {"fma": {...} or None, "fma_error": str or None, "gemm_gflops": float or None}."""
    result: dict = {"fma": None, "fma_error": None, "gemm_gflops": None}
    try:
        result["fma"] = measure_fma_gflops(threads)
    except (PeakUnavailable, subprocess.SubprocessError, OSError, ValueError) as exc:
        result["fma_error"] = str(exc)
    if gemm:
        try:
            result["gemm_gflops"] = measure_gemm_gflops(threads)
        except ImportError:
            pass
    return result


def peak_gflops(measured: dict) -> Optional[float]:
    return measured["fma"]["gflops"] if measured.get("fma") else None
