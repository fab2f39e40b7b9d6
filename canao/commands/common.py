"""Arguments and steps shared by several subcommands."""
import os


def add_model_args(p) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="zoo name (minilm-l6, bert-base, distilbert, mobilebert), a Hugging Face model folder, or an .onnx file")
    p.add_argument("--seq-len", type=int, default=128, help="sequence length the model is compiled for (default 128)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")


def add_target_args(p, default: str = "x86") -> None:
    p.add_argument("--target", "-t", default=default,
                   help=f"named target (see `canao targets`) or a TVM target dict as JSON (default {default})")
    p.add_argument("--pipeline", choices=("canao", "stock"), default="canao",
                   help="canao = LP-Fusion + default schedules; stock = TVM's default Relax pipeline")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all cores)")
    add_fusion_args(p)


def add_fusion_args(p) -> None:
    p.add_argument("--yellow", choices=("measure", "default", "fuse", "split"), default="measure",
                   help="how LP-Fusion settles legal-but-uncertain fusions: measure both versions on the target "
                   "(cached; falls back to 'default' for targets that do not run here), the default policy, or all one way")
    p.add_argument("--no-prepack", action="store_true",
                   help="keep GEMM weights in their imported layout (default: packed at build time into the "
                   "panels the GEMM tile streams; see docs/schedules.md)")


def add_quantize_arg(p) -> None:
    p.add_argument("--quantize", choices=("int8", "w4"),
                   help="int8: int8 weights per output channel + dynamic per-token int8 activations; "
                   "w4: 4-bit group-wise weights on the same int8 kernels (see docs/quantization.md)")


# A quantized build is checked by the cosine of its output to the fp32 reference, not by atol.
QUANT_MIN_COSINE = 0.99
W4_MIN_COSINE = 0.9  # 4-bit round-to-nearest weights: measured 0.93-0.94 on MiniLM-L6 (PyTorch simulation agrees)


def cosine(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


def build_options(args):
    """The BuildOptions a subcommand's flags ask for (--yellow, --no-prepack, --quantize, --tuning-db)."""
    from ..codegen.options import BuildOptions

    return BuildOptions(yellow=getattr(args, "yellow", "measure"), quantize=getattr(args, "quantize", None) or None,
                        tuning_db=getattr(args, "tuning_db", None) or None,
                        prepack_weights=not getattr(args, "no_prepack", False))


def set_threads(threads: int) -> None:
    """Same thread count for every engine; TVM reads TVM_NUM_THREADS when its pool starts."""
    os.environ["TVM_NUM_THREADS"] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def load(args):
    from ..frontends import load_model

    return load_model(args.model, seq_len=args.seq_len, batch=args.batch)
