"""Read the artifact folder that ``canao compile`` writes (the contract, not the writer).

    OUT/lib.so         the compiled Relax VM library
    OUT/params.npz     the weights main() takes after the inputs, arr_0..arr_N in order
    OUT/manifest.json  {"target": {"arch": ...}, "inputs": [{name, shape, dtype}], "reference": optional}
    OUT/reference.npz  optional: "input:<name>" arrays and "output" (the framework's answer)
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from canao.errors import CanaoError


@dataclass
class DeviceArtifact:
    folder: Path
    manifest: dict

    @property
    def lib(self) -> Path:
        return self.folder / "lib.so"

    @property
    def arch(self) -> Optional[str]:
        return (self.manifest.get("target") or {}).get("arch")

    @property
    def input_specs(self) -> List[dict]:
        return list(self.manifest.get("inputs") or [])

    def params(self) -> List[np.ndarray]:
        with np.load(self.folder / "params.npz") as data:
            return [data[f"arr_{i}"] for i in range(len(data.files))]

    def reference(self) -> Optional[Dict[str, object]]:
        """{"inputs": {name: array}, "output": array} or None when the folder has no reference."""
        name = self.manifest.get("reference") or "reference.npz"
        path = self.folder / name
        if not path.is_file():
            return None
        with np.load(path) as data:
            inputs = {k.split(":", 1)[1]: data[k] for k in data.files if k.startswith("input:")}
            return {"inputs": inputs, "output": data["output"] if "output" in data.files else None}

    def inputs_in_order(self, given: Dict[str, np.ndarray]) -> List[np.ndarray]:
        """The model's inputs in manifest order, shape/dtype checked, as contiguous arrays."""
        out = []
        for spec in self.input_specs:
            if spec["name"] not in given:
                raise CanaoError(f"input '{spec['name']}' missing for {self.folder}",
                                 f"the model takes {', '.join(s['name'] for s in self.input_specs)}")
            array = np.asarray(given[spec["name"]])
            if tuple(array.shape) != tuple(spec["shape"]):
                raise CanaoError(f"input '{spec['name']}' has shape {tuple(array.shape)}, "
                                 f"the model was compiled for {tuple(spec['shape'])}",
                                 "recompile with matching --seq-len/--batch")
            out.append(np.ascontiguousarray(array.astype(spec["dtype"], copy=False)))
        return out

    def synthetic_inputs(self, seed: int = 0) -> Dict[str, np.ndarray]:
        """Deterministic inputs when no reference ships: token ids, a full mask, zero segments."""
        rng = np.random.default_rng(seed)
        out = {}
        for spec in self.input_specs:
            shape, dtype, name = tuple(spec["shape"]), spec["dtype"], spec["name"]
            if "mask" in name:
                out[name] = np.ones(shape, dtype)
            elif "type" in name or "segment" in name:
                out[name] = np.zeros(shape, dtype)
            elif np.dtype(dtype).kind in "iu":
                out[name] = rng.integers(0, 1000, size=shape).astype(dtype)
            else:
                out[name] = rng.standard_normal(shape).astype(dtype)
        return out


def load_artifact(folder) -> DeviceArtifact:
    """Open an artifact folder, or a one-line error naming what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CanaoError(f"{folder} is not a folder", "pass the -o folder of `canao compile`")
    missing = [name for name in ("lib.so", "params.npz", "manifest.json") if not (folder / name).is_file()]
    if missing:
        raise CanaoError(f"{folder} is not a complete CANAO artifact (missing {', '.join(missing)})",
                         "pass the -o folder of `canao compile MODEL --target android-arm64 -o OUT/`")
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except ValueError as exc:
        raise CanaoError(f"{folder}/manifest.json is not valid JSON: {exc}", "recompile the model") from exc
    if not manifest.get("inputs"):
        raise CanaoError(f"{folder}/manifest.json lists no inputs", "recompile the model with `canao compile`")
    return DeviceArtifact(folder, manifest)
