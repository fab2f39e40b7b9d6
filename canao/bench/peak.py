"""The machine's practical peak FLOP/s, measured with a large GEMM (what % of peak is quoted against)."""
import time


def measure_gemm_gflops(threads: int, n: int = 1024, repeats: int = 10) -> float:
    """Best of ``repeats`` n^3 fp32 matmuls with PyTorch's BLAS on ``threads`` threads."""
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
