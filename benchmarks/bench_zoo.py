"""The differential zoo at full config size (issue 16): every architecture of ``canao.zoo.DIFFERENTIAL``
through (a) ``LPFusion`` in a plain ``tvm.transform.Sequential`` + ``tvm.compile(relax_pipeline="default")``
and (b) the ``canao compile`` build path, each compared with PyTorch on every output; kernel counts
of the canao build vs TVM's stock FuseOps pipeline.

    python benchmarks/bench_zoo.py                          # full size, seq 128, JSON to benchmarks/results/zoo.json
    python benchmarks/bench_zoo.py --size tiny --seq-len 16 # the test sizes (what tests/test_zoo_differential.py runs)
    python benchmarks/bench_zoo.py --models roberta gpt2

Each model runs in its own subprocess (a crash or an out-of-memory in one model is that model's
row, not the end of the run). This is a correctness harness, not a timing benchmark: the seconds
it prints are compile times on whatever machine ran it.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _one(name: str, seq_len: int, yellow: str, timeout: int) -> dict:
    code = ("import json, sys; from canao.zoo import differential_check; "
            f"print('@@' + json.dumps(differential_check({name!r}, seq_len={seq_len}, yellow={yellow!r})))")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"model": name, "status": "fail", "reason": f"timed out after {timeout} s", "seconds": timeout}
    for line in proc.stdout.splitlines():
        if line.startswith("@@"):
            return json.loads(line[2:])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
    return {"model": name, "status": "fail", "reason": f"process exited {proc.returncode}: {tail}",
            "seconds": round(time.perf_counter() - start, 1)}


def _err(path: dict) -> str:
    if path.get("max_rel_err") is not None:
        return f"{path['max_rel_err']:.1e}"
    return "-"


def table(rows) -> str:
    lines = [f"{'model':22s} {'outputs':>7s} {'err lpfusion':>12s} {'err canao':>10s} {'kernels':>11s} {'ratio':>6s}  status",
             "-" * 100]
    for r in rows:
        k = r.get("kernels") or {}
        kernels = f"{k.get('canao') or '-'}/{k.get('stock') or '-'}"
        ratio = f"{k['ratio']:.2f}" if k.get("ratio") else "-"
        status = r["status"] + (f": {r['reason']}" if r.get("reason") else "")
        lines.append(f"{r['model']:22s} {len(r.get('outputs') or []):7d} {_err(r.get('lpfusion') or {}):>12s} "
                     f"{_err(r.get('canao') or {}):>10s} {kernels:>11s} {ratio:>6s}  {status[:160]}")
    passed = sum(r["status"] == "pass" for r in rows)
    lines.append(f"{passed}/{len(rows)} models pass both paths (max rel err <= 1e-4 on every output)")
    return "\n".join(lines)


def main(argv=None) -> int:
    from canao import zoo

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", default=zoo.DIFFERENTIAL, help="zoo names (default: the whole zoo)")
    p.add_argument("--size", choices=("full", "tiny"), default="full", help="config size (tiny = the test sizes)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--yellow", default="default", help="LP-Fusion yellow-edge policy (default: the unmeasured one)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per model")
    p.add_argument("--json", default=str(HERE / "results" / "zoo.json"))
    args = p.parse_args(argv)
    rows = []
    for name in args.models:
        model = zoo.test_size_name(name) if args.size == "tiny" else name
        row = _one(model, args.seq_len, args.yellow, args.timeout)
        rows.append(row)
        print(f"{model}: {row['status']} ({row.get('seconds', '?')} s)" + (f" {row['reason']}" if row.get("reason") else ""),
              flush=True)
    print()
    print(table(rows))
    out = Path(args.json)
    from canao.atomic import write_json

    write_json(out, {"size": args.size, "seq_len": args.seq_len, "yellow": args.yellow, "models": rows})
    print(f"wrote {out}")
    return 0 if all(r["status"] == "pass" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
