"""One class per engine. Each prepares itself from the same ImportedModel, then times one call.

``prepare()`` does everything up to a ready-to-run session (build, export, convert) and is what
"init" measures; ``runner(inputs)`` returns a zero-argument callable for the timing loop;
``output(inputs)`` is what gets checked against PyTorch.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np

from ..errors import CanaoError


class EngineUnavailable(Exception):
    """The engine cannot run this model here (missing package, no torch source): skipped, with why."""


def cache_root() -> Path:
    return Path(os.environ.get("CANAO_CACHE", Path.home() / ".cache" / "canao"))


def _version(dist: str, path=None) -> str:
    from importlib import metadata

    try:
        if path is None:
            return metadata.version(dist)
        found = next(iter(metadata.distributions(name=dist, path=[str(path)])), None)
        return found.version if found is not None else "none"
    except metadata.PackageNotFoundError:
        return "none"


def weights_digest(imported) -> str:
    """A digest of the model's weights (what a cached conversion must match), computed once per model."""
    cached = getattr(imported, "_canao_weights_digest", None)
    if cached:
        return cached
    h = hashlib.blake2b(digest_size=16)
    for p in imported.params:
        a = np.ascontiguousarray(np.asarray(p))
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.data)
    digest = h.hexdigest()
    try:
        object.__setattr__(imported, "_canao_weights_digest", digest)
    except (AttributeError, TypeError):
        pass
    return digest


def artifact_dir(imported, kind: str, versions: Dict[str, str]) -> Path:
    """Cache folder of one conversion of ``imported`` (ONNX export, .tflite), keyed by model name, input
    shapes, weights and the converters' versions: a second `canao benchmark` skips the conversion."""
    key = json.dumps({"kind": kind, "model": imported.name,
                      "inputs": [[s.name, list(s.shape), s.dtype] for s in imported.inputs],
                      "weights": weights_digest(imported), "versions": versions}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    folder = cache_root() / "conversions" / f"{kind}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "key.json").write_text(key)
    return folder


@dataclass
class Engine:
    name: str
    description: str

    def prepare(self, imported, threads: int, workdir: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def runner(self, inputs: Dict[str, np.ndarray]) -> Callable[[], object]:  # pragma: no cover
        raise NotImplementedError

    def output(self, inputs: Dict[str, np.ndarray]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        pass


class TVMEngine(Engine):
    """A Relax build: this toolkit's pipeline or TVM's stock one."""

    def __init__(self, name, description, pipeline: str, target: str = "x86", options: Optional[dict] = None):
        super().__init__(name, description)
        self.pipeline, self.target_name, self.options = pipeline, target, options or {}
        self.compiled = None

    def prepare(self, imported, threads, workdir):
        from ..codegen import resolve_target
        from ..codegen.build import build
        from ..runtime import LocalModel

        self.compiled = build(imported, resolve_target(self.target_name, threads=threads), self.pipeline,
                              options=self.options)
        self.model = LocalModel.from_compiled(self.compiled, imported.inputs)
        self.size_mb = sum(np.asarray(p).nbytes for p in self.compiled.params) / 1e6  # weights as shipped

    def runner(self, inputs):
        return self.model.runner(inputs)

    def output(self, inputs):
        return self.model.run(inputs)


class TorchEngine(Engine):
    def prepare(self, imported, threads, workdir):
        import torch

        if imported.torch_module is None:
            raise EngineUnavailable("the model did not come from PyTorch")
        torch.set_num_threads(threads)
        self.module = imported.torch_module
        self.names = [s.name for s in imported.inputs]

    def _tensors(self, inputs):
        import torch

        return [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self.names]

    def runner(self, inputs):
        import torch

        args = self._tensors(inputs)

        def call():
            with torch.inference_mode():
                return self.module(*args)

        return call

    def output(self, inputs):
        out = self.runner(inputs)()
        return out.detach().numpy() if hasattr(out, "detach") else np.asarray(out)


def export_onnx(imported, path: Optional[str] = None) -> str:
    """The same model and weights as ONNX (dynamo exporter, opset 18), or the user's own ONNX file.

    The export is cached (``artifact_dir``, keyed by model, shapes, weights and exporter versions)
    and the cached file's path is returned; ``path`` is accepted for old callers and not used.
    """
    if imported.source.get("kind") == "onnx":
        return imported.source["path"]
    if imported.torch_module is None:
        raise EngineUnavailable("no PyTorch module to export to ONNX")
    folder = artifact_dir(imported, "onnx", {d: _version(d) for d in ("torch", "onnx", "onnxscript", "onnxruntime")})
    cached = folder / "model.onnx"
    if cached.exists():
        return str(cached)
    import contextlib
    import io

    import torch

    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=folder))
    try:
        example = tuple(torch.from_numpy(imported.example_inputs()[s.name]) for s in imported.inputs)
        with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            torch.onnx.export(imported.torch_module, example, str(staging / "model.onnx"), dynamo=True,
                              opset_version=18, input_names=[s.name for s in imported.inputs],
                              output_names=["output"])
        for f in staging.iterdir():  # model.onnx.data first: model.onnx appearing means complete
            if f.name != "model.onnx":
                os.replace(f, folder / f.name)
        os.replace(staging / "model.onnx", cached)
    finally:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return str(cached)


class OrtEngine(Engine):
    """ONNX Runtime on CPU; ``bert_optimizer`` runs onnxruntime.transformers' fusions first."""

    def __init__(self, name, description, bert_optimizer: bool = False, quantize: Optional[str] = None):
        super().__init__(name, description)
        self.bert_optimizer, self.quantize = bert_optimizer, quantize

    def prepare(self, imported, threads, workdir):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EngineUnavailable("onnxruntime is not installed") from exc
        path = export_onnx(imported)
        derived = Path(path).parent if imported.source.get("kind") != "onnx" else Path(workdir)
        if self.bert_optimizer:
            dst = derived / "model.bert-opt.onnx"
            path = str(dst) if dst.exists() else self._optimize(imported, path, str(dst))
        if self.quantize:
            path = _ort_dynamic_int8(path, str(derived / f"{Path(path).stem}.int8.onnx"))
        self.size_mb = _onnx_size_mb(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # spinning worker threads steal the CPU from the engines timed after ORT in the same round
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # e.g. the BERT optimizer's graph refused for some architectures
            raise EngineUnavailable(f"ONNX Runtime refused the model: {str(exc).splitlines()[0][:200]}") from exc
        self.names = [i.name for i in self.session.get_inputs()]
        self.node_count = _onnx_node_count(path)

    def _optimize(self, imported, src, dst):
        import contextlib
        import io

        from onnxruntime.transformers.optimizer import optimize_model

        cfg = getattr(getattr(imported.torch_module, "inner", None), "inner", None)
        cfg = getattr(cfg, "config", None)
        heads = getattr(cfg, "num_attention_heads", 0) or 0
        hidden = getattr(cfg, "hidden_size", 0) or 0
        tmp = str(Path(dst).with_name(f".{os.getpid()}.{Path(dst).name}"))
        with contextlib.redirect_stdout(io.StringIO()):
            opt = optimize_model(src, model_type="bert", num_heads=heads, hidden_size=hidden)
            opt.save_model_to_file(tmp)
        os.replace(tmp, dst)
        return dst

    def runner(self, inputs):
        feed = {n: inputs[n] for n in self.names}
        return lambda: self.session.run(None, feed)

    def output(self, inputs):
        return self.runner(inputs)()[0]


def _ort_dynamic_int8(src: str, dst: str) -> str:
    """onnxruntime.quantization.quantize_dynamic: int8 weights, activations quantized at run time."""
    if not os.path.exists(dst):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = str(Path(dst).with_name(f".{os.getpid()}.{Path(dst).name}"))
        quantize_dynamic(src, tmp, weight_type=QuantType.QInt8)
        os.replace(tmp, dst)
    return dst


def _onnx_size_mb(path: str) -> float:
    """The model file plus external weight files beside it (the dynamo exporter may write .data)."""
    size = os.path.getsize(path)
    data = path + ".data"
    return (size + (os.path.getsize(data) if os.path.exists(data) else 0)) / 1e6


def _onnx_node_count(path: str) -> int:
    import onnx

    return len(onnx.load(path, load_external_data=False).graph.node)


LITERT_TORCH = "litert-torch==0.10.0"


def litert_converter_home() -> Path:
    """Where scripts/install.sh put the LiteRT converter (litert-torch and what it needs beyond the main
    environment): its pins (litert-converter -> xdsl -> typing-extensions < 4.13) cannot live beside
    apache-tvm-ffi, so it runs in a subprocess with this folder first on PYTHONPATH."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "canao" / "litert-converter"
    return Path(os.environ.get("CANAO_LITERT_HOME", default))


def convert_tflite(imported, quantize: Optional[str] = None) -> str:
    """imported.torch_module -> .tflite with litert-torch, in the converter's own environment (a
    subprocess), cached by model, shapes, weights and converter versions. Returns the file's path."""
    home = litert_converter_home()
    if not (home / "litert_torch").is_dir():
        raise EngineUnavailable(f"the LiteRT converter is not installed in {home}: run scripts/install.sh "
                                "(or set CANAO_LITERT_HOME to a folder made by it)")
    versions = {"torch": _version("torch"), "litert-torch": _version("litert-torch", home),
                "litert-converter": _version("litert-converter", home), "quantize": quantize or "fp32"}
    folder = artifact_dir(imported, "tflite", versions)
    path = folder / f"model{'.' + quantize if quantize else ''}.tflite"
    if path.exists():
        return str(path)
    import cloudpickle
    import torch

    with tempfile.TemporaryDirectory(prefix="canao-litert-") as tmp:
        job, out, status = Path(tmp) / "job.pkl", Path(tmp) / "model.tflite", Path(tmp) / "status.txt"
        example = tuple(torch.from_numpy(imported.example_inputs()[s.name]) for s in imported.inputs)
        with open(job, "wb") as f:
            cloudpickle.dump({"module": imported.torch_module.eval(), "example": example, "quantize": quantize,
                              "out": str(out), "status": str(status)}, f)
        import canao

        package_parent = str(Path(canao.__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(home), package_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        sys.stdout.flush()
        sys.stderr.flush()
        # the converter's own chatter goes where fd 2 goes: the log file, or the terminal with -v
        proc = subprocess.run([sys.executable, "-m", "canao.bench.engines", "convert-tflite", str(job)], env=env,
                              stdout=2, stderr=2, stdin=subprocess.DEVNULL)
        if proc.returncode != 0 or not out.exists():
            why = status.read_text().strip() if status.exists() else f"exit code {proc.returncode}"
            raise CanaoError(f"LiteRT conversion failed: {why[:300]}",
                             "see the log file; rerun with -v to see the converter's output")
        os.replace(out, path)
    return str(path)


def _convert_tflite_job(job_path: str) -> int:
    """Child side of convert_tflite: runs with litert-torch's environment first on sys.path."""
    import cloudpickle

    with open(job_path, "rb") as f:
        job = cloudpickle.load(f)
    try:
        import litert_torch

        kwargs = {}
        if job["quantize"]:
            from litert_torch.generative.quantize.quant_recipes import full_dynamic_recipe

            kwargs["quant_config"] = full_dynamic_recipe()
        litert_torch.convert(job["module"], job["example"], **kwargs).export(job["out"])
    except Exception as exc:  # noqa: BLE001 - reported to the parent in one line
        Path(job["status"]).write_text(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        raise
    return 0


class LiteRTEngine(Engine):
    """LiteRT (TFLite) with its default XNNPACK delegate, converted by litert-torch from the same module;
    ``quantize="int8"`` uses the converter's dynamic-range recipe (int8 weights per channel, activations
    quantized on the fly). The runtime (ai-edge-litert) lives in the main environment, the converter in
    its own (``convert_tflite``)."""

    def __init__(self, name, description, quantize: Optional[str] = None):
        super().__init__(name, description)
        self.quantize = quantize

    def prepare(self, imported, threads, workdir):
        if imported.torch_module is None:
            raise EngineUnavailable("litert-torch converts PyTorch modules; this model came from ONNX")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise EngineUnavailable("the LiteRT runtime is not installed: pip install ai-edge-litert==2.3.0 "
                                    "(scripts/install.sh does it)") from exc
        path = convert_tflite(imported, self.quantize)
        self.size_mb = os.path.getsize(path) / 1e6
        self.interpreter = Interpreter(model_path=path, num_threads=threads)
        self.interpreter.allocate_tensors()
        # the converter keeps argument order; int64 inputs become int32
        self.details = self.interpreter.get_input_details()
        self.names = [s.name for s in imported.inputs]
        self.out_index = self.interpreter.get_output_details()[0]["index"]

    def runner(self, inputs):
        for d, name in zip(self.details, self.names):
            self.interpreter.set_tensor(d["index"], inputs[name].astype(d["dtype"]))
        return self.interpreter.invoke

    def output(self, inputs):
        self.runner(inputs)()
        return self.interpreter.get_tensor(self.out_index).copy()


def quantized_engines(mode: str = "int8"):
    """The int8 rows: this toolkit's quantized build, LiteRT dynamic-range int8, ORT dynamic int8."""
    from canao.fusion.quantize import QUANT_MODES

    if mode not in QUANT_MODES:
        raise CanaoError(f"unknown quantization mode '{mode}'", f"use one of {', '.join(QUANT_MODES)}")
    label = "int8 weights" if mode == "int8" else "4-bit weights"
    return [
        TVMEngine(f"canao-{mode}", f"this toolkit, {label} + dynamic per-token int8 activations (VNNI)", "canao",
                  options={"quantize": mode}),
        LiteRTEngine("litert-int8", "LiteRT dynamic-range int8 (full_dynamic_recipe) with XNNPACK", quantize="int8"),
        OrtEngine("onnxruntime-int8", "ONNX Runtime quantize_dynamic (QInt8 weights)", quantize="int8"),
    ]


def engine_catalog(tuned_db: Optional[str] = None):
    """Every host engine `canao benchmark --engines` can name, in table order: {name: factory}."""
    catalog = {
        "canao": lambda: TVMEngine("canao", "this toolkit (LP-Fusion + default schedules)", "canao"),
        "canao-stock-fusion": lambda: TVMEngine(
            "canao-stock-fusion", "this toolkit's default schedules on TVM's FuseOps+FuseTIR (no LP-Fusion)", "canao",
            options={"fusion": False}),
        "canao-unpacked": lambda: TVMEngine(
            "canao-unpacked", "this toolkit with GEMM weights in their imported layout (no prepacking)", "canao",
            options={"prepack_weights": False}),
        "tvm-stock": lambda: TVMEngine("tvm-stock", "TVM Relax default pipeline, untuned", "stock"),
        "pytorch": lambda: TorchEngine("pytorch", "PyTorch eager (inference_mode)"),
        "onnxruntime": lambda: OrtEngine("onnxruntime", "ONNX Runtime CPU, default graph optimizations"),
        "onnxruntime-bert": lambda: OrtEngine("onnxruntime-bert", "ONNX Runtime + transformers BERT optimizer",
                                              bert_optimizer=True),
        "litert-xnnpack": lambda: LiteRTEngine("litert-xnnpack", "LiteRT/TFLite fp32 with XNNPACK"),
    }
    if tuned_db:
        catalog = {"canao": catalog.pop("canao"),
                   "canao-tuned": lambda: TVMEngine("canao-tuned", f"this toolkit + tuning database {tuned_db}",
                                                    "canao", options={"tuning_db": tuned_db}),
                   **catalog}
    return catalog


# The default line-up: every engine but canao-stock-fusion and canao-unpacked (ask for them to see what
# LP-Fusion and weight prepacking gain).
DEFAULT_ENGINES = ("canao", "canao-tuned", "tvm-stock", "pytorch", "onnxruntime", "onnxruntime-bert", "litert-xnnpack")
QUANTIZED_ENGINES = ("canao-{mode}", "litert-int8", "onnxruntime-int8")


def engine_names_help() -> str:
    """For --help: the names --engines takes."""
    return (", ".join(n if n != "canao-tuned" else "canao-tuned (with --tuned DB)" for n in engine_catalog("DB"))
            + "; with --quantize MODE also "
            + ", ".join(n.replace("{mode}", "MODE") for n in QUANTIZED_ENGINES))


def default_engines(tuned_db: Optional[str] = None, include=None, quantize: Optional[str] = None,
                    quant_atol: float = 0.3):
    """The side-by-side line-up, in table order (plus the quantized rows when ``quantize`` is set).

    ``include`` (names, from --engines) picks any engine of the catalog, including ones not in the
    default line-up such as ``canao-stock-fusion``; an unknown name is a one-line error.
    """
    catalog = engine_catalog(tuned_db)
    engines = [make() for name, make in catalog.items() if include or name in DEFAULT_ENGINES]
    if quantize:
        quantized = quantized_engines(quantize)
        for engine in quantized:  # differ from fp32 by design: their own tolerance, fp32 rows stay strict
            engine.atol = quant_atol
        engines += quantized
    if include:
        include = [n.strip() for n in include if n.strip()]
        unknown = [n for n in include if n not in {e.name for e in engines}]
        if unknown or not include:
            hint = "" if quantize else " (int8/w4 rows need --quantize)"
            raise CanaoError(f"unknown engine(s) {', '.join(unknown) or '(none given)'} for --engines",
                             f"choose from {', '.join(e.name for e in engines)}{hint}")
        engines = [e for e in engines if e.name in include]
    return engines


class DeviceEngine(Engine):
    """A TVM build run on a remote device over RPC (a phone, or the emulated one).

    Its runner times one call on the device with TVM's time_evaluator (device-side clock, so the
    RPC round trip is not counted); ``output`` fetches the result for the numeric check.
    """

    timed_on_device = True

    def __init__(self, name, description, pipeline: str, target: str, device: "SharedDevice",
                 options: Optional[dict] = None):
        super().__init__(name, description)
        self.pipeline, self.target_name, self.device = pipeline, target, device
        self.options = options or {}

    def prepare(self, imported, threads, workdir):
        from ..android_runner import RemoteModel
        from ..codegen import resolve_target
        from ..codegen.build import build

        target = resolve_target(self.target_name, threads=threads)
        self.compiled = build(imported, target, self.pipeline, options=self.options)
        lib = os.path.join(workdir, f"{self.name}.so")
        self.compiled.export(lib)
        self.names = [s.name for s in imported.inputs]
        self.model = RemoteModel(self.device.session(), lib, self.compiled.params)

    def runner(self, inputs):
        arrays = [inputs[n] for n in self.names]

        def timed():
            return self.model.time(arrays, repeat=1, number=1)[0]

        timed.reports_ms = True  # time_once takes the device's own measurement
        return timed

    def output(self, inputs):
        out = self.model.run([inputs[n] for n in self.names])
        return out[0] if isinstance(out, list) else out

    def close(self):
        self.device.close()


class SharedDevice:
    """One RPC session for every engine on the device: a device serves one session at a time."""

    def __init__(self, connect_kwargs: dict):
        self.connect_kwargs = connect_kwargs
        self._session = None

    def session(self):
        from ..android_runner import connect

        if self._session is None:
            self._session = connect(**self.connect_kwargs)
        return self._session

    def close(self):
        if self._session is not None:
            self._session.close()
            self._session = None


def device_engines(target: str, connect_kwargs: dict):
    """The line-up on a device: this toolkit's build and TVM's stock one (host engines stay home)."""
    device = SharedDevice(connect_kwargs)
    return [DeviceEngine("canao", f"this toolkit on the device ({target})", "canao", target, device,
                         options={"yellow": "default"}),
            DeviceEngine("tvm-stock", f"TVM default pipeline on the device ({target})", "stock", target, device)]


if __name__ == "__main__":  # python -m canao.bench.engines convert-tflite JOB (see convert_tflite)
    if len(sys.argv) == 3 and sys.argv[1] == "convert-tflite":
        sys.exit(_convert_tflite_job(sys.argv[2]))
    sys.exit("usage: python -m canao.bench.engines convert-tflite JOB.pkl")
