"""The compiled artifact folder: what `canao compile` writes and `canao run/deploy` read.

    OUT/lib.so         the compiled Relax VM library (cross-linked for the target's architecture)
    OUT/params.npz     weights main() takes after the inputs, as arr_0..arr_N in order
    OUT/manifest.json  model, inputs, target, pipeline, versions, op/kernel counts, numeric check
    OUT/reference.npz  example inputs and the framework's outputs on them (for on-device checks):
                       "input:<name>", "output:<name>" for every output, and "output" (the first)
    OUT/fusion_plan.json  the LP-Fusion plan: groups, mapping types, edge decisions, rewrites
    OUT/tokenizer/     the model's own tokenizer files, when it has one
"""
import hashlib
import json
import platform
import shutil
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .atomic import staged_dir
from .errors import CanaoError

MANIFEST = "manifest.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def versions() -> Dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("canao", "apache-tvm", "apache-tvm-ffi", "torch", "transformers", "onnx", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def output_checksum(array: np.ndarray) -> str:
    """sha256 of the output rounded to 1e-4: stable across runs, changes when numbers really change."""
    rounded = np.round(np.asarray(array, dtype=np.float64), 4) + 0.0  # + 0.0 folds -0.0 into 0.0
    return hashlib.sha256(rounded.tobytes()).hexdigest()[:16]


def write(out_dir, compiled, imported, check: dict, reference: Optional[dict], force: bool = False,
          extra: Optional[dict] = None) -> Path:
    """Write the artifact atomically: a temp folder renamed into place only when everything is in it."""
    from . import __version__

    with staged_dir(out_dir, force=force) as tmp:
        compiled.export(str(tmp / "lib.so"))
        np.savez(tmp / "params.npz", *compiled.params)
        if reference is not None:
            outputs = reference.get("outputs") or {imported.output_names[0]: reference["output"]}
            np.savez(tmp / "reference.npz", **{f"input:{k}": v for k, v in reference["inputs"].items()},
                     **{f"output:{k}": v for k, v in outputs.items()}, output=next(iter(outputs.values())))
        for name, report in compiled.reports.items():
            (tmp / f"{name}_plan.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        if imported.tokenizer_dir:
            (tmp / "tokenizer").mkdir()
            for name in TOKENIZER_FILES:
                src = Path(imported.tokenizer_dir) / name
                if src.is_file():
                    shutil.copy2(src, tmp / "tokenizer" / name)
        manifest = {
            "format": "canao-artifact/1",
            "canao_version": __version__,
            "model": imported.name,
            "source": imported.source,
            "inputs": [s.to_json() for s in imported.inputs],
            "outputs": [s.to_json() for s in imported.outputs],
            "target": compiled.target.to_json(),
            "pipeline": compiled.pipeline,
            "kernels": compiled.kernels,
            "stages": [s.to_json() for s in compiled.stages],
            "num_params": len(compiled.params),
            "param_bytes": int(sum(p.nbytes for p in compiled.params)),
            "check": check,
            "build_report": compiled.report.to_json() if compiled.report is not None else None,
            "plans": {name: f"{name}_plan.json" for name in compiled.reports},
            "versions": versions(),
        }
        if extra:
            manifest.update(extra)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return Path(out_dir)


_REQUIRED = {"inputs": list, "target": dict}


def read_manifest(out_dir) -> dict:
    """The artifact's manifest, or a one-line error when it is missing, not JSON, or incomplete."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise CanaoError(f"{out_dir} is not a CANAO artifact (no {MANIFEST})", "pass a folder written by `canao compile`")
    fix = f"recompile it: canao compile MODEL -o {out_dir} --force"
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CanaoError(f"{path} is corrupt (not valid JSON: {str(exc).splitlines()[0][:120]})", fix) from exc
    if not isinstance(manifest, dict):
        raise CanaoError(f"{path} is corrupt (a JSON {type(manifest).__name__}, not an object)", fix)
    for key, kind in _REQUIRED.items():
        if not isinstance(manifest.get(key), kind) or not manifest[key]:
            raise CanaoError(f"{path} is incomplete (no '{key}')", fix)
    try:
        for spec in manifest["inputs"]:
            spec["name"], tuple(spec["shape"]), np.dtype(spec["dtype"])
        for spec in manifest.get("outputs") or []:
            spec["name"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CanaoError(f"{path} is corrupt (an input or output entry lacks name/shape/dtype)", fix) from exc
    return manifest


def update_manifest(out_dir, **fields) -> dict:
    """Replace top-level fields of the manifest atomically (temp file + fsync + rename)."""
    from .atomic import write_json

    manifest = read_manifest(out_dir)
    manifest.update(fields)
    write_json(Path(out_dir) / MANIFEST, manifest)
    return manifest


def load_params(out_dir) -> List[np.ndarray]:
    """The weights main() takes after the inputs, or a one-line error when params.npz is missing or broken."""
    path = Path(out_dir) / "params.npz"
    fix = f"recompile it: canao compile MODEL -o {out_dir} --force (params.npz ships with lib.so)"
    if not path.is_file():
        raise CanaoError(f"{out_dir} has no params.npz (the model's weights)", fix)
    try:
        with np.load(path) as data:
            return [data[f"arr_{i}"] for i in range(len(data.files))]
    except Exception as exc:  # BadZipFile, truncated member, a missing arr_i: all mean a damaged file
        raise CanaoError(f"{path} is corrupt ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})",
                         fix) from exc


def load_reference(out_dir) -> Optional[dict]:
    """{"inputs": {name: array}, "output": first output, "outputs": {name: array}} or None."""
    path = Path(out_dir) / "reference.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            inputs = {k.split(":", 1)[1]: data[k] for k in data.files if k.startswith("input:")}
            outputs = {k.split(":", 1)[1]: data[k] for k in data.files if k.startswith("output:")}
            first = data["output"] if "output" in data.files else next(iter(outputs.values()), None)
    except Exception as exc:
        raise CanaoError(f"{path} is corrupt ({type(exc).__name__})",
                         f"recompile it: canao compile MODEL -o {out_dir} --force") from exc
    if not outputs and first is not None:
        outputs = {"output": first}
    return {"inputs": inputs, "output": first, "outputs": outputs}
