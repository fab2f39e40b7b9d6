"""The integer GEMM kernels the quantize rewrite calls, as TE-built PrimFuncs.

Weights are stored in the panel layout int8 dot-product instructions read: ``[N/16, K/4, 16, 4]``
(16 output channels x 4 consecutive k per 64-byte panel, what one AVX-512 VNNI ``vpdpbusd`` takes).
Activations are uint8 (int8 shifted by +128: vpdpbusd multiplies u8 x s8); the shift is undone in
the dequantize epilogue. The w4 kernel reads two 4-bit weights per byte and unpacks them inside
the kernel (block ``canao_w4_unpack``, scaled by a per-group ratio onto the channel's int8 grid),
so no int8 copy of the weights exists outside it.

Block names are the contract with ``canao.codegen.schedules.int8``: it finds these GEMMs by name
after fusion has merged them with their epilogues.
"""
from typing import Tuple

GEMM_BLOCK = "canao_int8_matmul"
UNPACK_BLOCK = "canao_w4_unpack"
LANES, KPACK = 16, 4  # output channels x reduction elements per dot-product panel


def packed_shape(k: int, n: int) -> Tuple[int, int, int, int]:
    return (n // LANES, k // KPACK, LANES, KPACK)


def w4_shape(k: int, n: int) -> Tuple[int, int, int, int]:
    """Two k-panels share a byte: low nibble = even k/4 panel, high nibble = odd one."""
    return (n // LANES, k // (2 * KPACK), LANES, KPACK)


def _i64(shape):
    """Shapes as int64 immediates, as Relax legalization writes them (FuseTIR compares buffer types)."""
    from tvm import tirx

    return [tirx.IntImm("int64", int(d)) for d in shape]


def int8_matmul(m: int, k: int, n: int):
    """C[m, n] (int32) = sum_k A[m, k] (uint8) * B_packed (int8)."""
    from tvm import te

    a = te.placeholder(_i64((m, k)), "uint8", name="A")
    b = te.placeholder(_i64(packed_shape(k, n)), "int8", name="B")
    return te.create_prim_func([a, b, _gemm(a, lambda no, ko, ni, ki: b[no, ko, ni, ki], m, k, n)])


def w4_matmul(m: int, k: int, n: int, group: int):
    """As int8_matmul with 4-bit weights (offset by 8, two per byte) and one fp32 ratio per
    ``group`` rows of k and output channel: the kernel unpacks ``round(q4 * ratio)`` to int8 per
    weight panel (the int8 grid of the channel), so a group-wise 4-bit weight runs on int8 dot products."""
    from tvm import te, tirx

    a = te.placeholder(_i64((m, k)), "uint8", name="A")
    b = te.placeholder(_i64(w4_shape(k, n)), "uint8", name="B")
    ratio = te.placeholder(_i64((k // group, n)), "float32", name="R")

    def unpack(no, ko, ni, ki):
        nibble = (b[no, ko // 2, ni, ki] >> ((ko % 2) * 4).astype("uint8")) & tirx.const(15, "uint8")
        q4 = nibble.astype("float32") - tirx.const(8.0, "float32")
        return te.round(q4 * ratio[(ko * KPACK) // group, no * LANES + ni]).astype("int8")

    unpacked = te.compute(_i64(packed_shape(k, n)), unpack, name=UNPACK_BLOCK)
    return te.create_prim_func([a, b, ratio, _gemm(a, lambda no, ko, ni, ki: unpacked[no, ko, ni, ki], m, k, n)])


def _gemm(a, load_b, m, k, n):
    from tvm import te

    r = te.reduce_axis(_i64((0, k)), name="k")
    return te.compute(
        _i64((m, n)),
        lambda i, j: te.sum(a[i, r].astype("int32")
                            * load_b(j // LANES, r // KPACK, j % LANES, r % KPACK).astype("int32"), axis=r),
        name=GEMM_BLOCK)
