"""What a default schedule needs to know about a CPU target: vector width, registers, cores.

Read from the target's features (``mcpu`` / ``mattr`` through LLVM), never from the host, so a
cross build for a phone gets NEON-sized tiles on an AVX-512 machine.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class CPUTraits:
    isa: str  # "avx512" | "avx2" | "sse" | "neon" | "generic"
    vector_bits: int  # width of one SIMD register
    vector_registers: int  # architectural SIMD registers (for the matmul register tile)
    num_cores: int  # threads the runtime will use; 1 means no parallel loops
    dotprod: bool = False  # aarch64 sdot/udot (int8 paths; fp32 schedules ignore it)

    def lanes(self, dtype_bits: int = 32) -> int:
        return max(self.vector_bits // dtype_bits, 1)

    def matmul_tile(self, dtype_bits: int = 32):
        """(rows, columns) of the register tile C[mr, nr] kept in registers across the k loop.

        nr is two vectors wide; mr is chosen so that mr*2 accumulators plus two B vectors and one
        broadcast A fit in the register file (AVX-512 and NEON: 32 registers -> 8 rows;
        AVX2 / SSE: 16 registers -> 4 rows).
        """
        lanes = self.lanes(dtype_bits)
        nr = 2 * lanes
        mr = max(1, min(8, (self.vector_registers - 3) // 2))
        mr = 1 << (mr.bit_length() - 1)  # a power of two divides the usual Transformer sizes
        return mr, nr


def _has(features, target) -> bool:
    from tvm.target.codegen import llvm_cpu_has_features

    try:
        return bool(llvm_cpu_has_features(features, target))
    except Exception:  # an LLVM without this backend (e.g. no AArch64 support compiled in)
        return False


def cpu_traits(target) -> CPUTraits:
    """Traits of an ``llvm`` target; a non-CPU target gets a conservative 128-bit profile."""
    cores = int(target.attrs.get("num-cores", 0) or 0) if target.kind.name == "llvm" else 1
    if cores <= 0:
        import os

        cores = os.cpu_count() or 1
    if target.kind.name != "llvm":
        return CPUTraits("generic", 128, 16, cores)
    triple = str(target.attrs.get("mtriple", "") or "")
    if triple.startswith(("aarch64", "arm64")) or _has("neon", target):
        return CPUTraits("neon", 128, 32, cores, dotprod=_has("dotprod", target))
    if _has("avx512f", target):
        return CPUTraits("avx512", 512, 32, cores)
    if _has("avx2", target) or _has("avx", target):
        return CPUTraits("avx2", 256, 16, cores)
    if _has("sse2", target) or not triple or triple.startswith(("x86", "i686")):
        return CPUTraits("sse", 128, 16, cores)
    return CPUTraits("generic", 128, 16, cores)
