"""int8 / 4-bit weight quantization as a Relax rewrite in the canao pipeline.

    build(imported, spec, "canao", options=BuildOptions(quantize="int8"))     # or "w4"
    mod = Quantize("int8")(mod)                                       # any Relax module with weights

Registered in the "rewrite" slot after LP-Fusion's algebra (order 60), so the quantize / dequantize
polynomials it creates are folded before weights are lifted; what it did is returned in
``CompiledModel.reports["quantize"]`` and, as rewrite records, in the fusion report. See docs/quantization.md.
"""
from canao.codegen import pipeline as _pipeline
from canao.codegen.options import BuildOptions

from .rewrite import QMAX, QUANT_MODES, Quantize, QuantizationWarning, QuantizeReport, quantize_module, \
    why_not_quantizable

__all__ = ["Quantize", "QuantizeReport", "QuantizationWarning", "QUANT_MODES", "QMAX", "quantize_module",
           "why_not_quantizable", "stage_factory"]


def stage_factory(target, options):
    mode = BuildOptions.coerce(options).quantize
    if not mode:
        return None
    if mode not in QUANT_MODES:
        from canao.errors import CanaoError

        raise CanaoError(f"unknown quantization mode '{mode}'", f"use one of {', '.join(QUANT_MODES)}")
    report = QuantizeReport(mode)
    sink = _pipeline.stage_reports()  # the build's, taken now: the pass may run later
    sink.reports["quantize"] = report.to_json()
    inner = Quantize(mode, report, sink.rewrite_records)

    @__import__("tvm").transform.module_pass(opt_level=0, name="CanaoQuantize+report")
    def _pass(mod, ctx):
        out = inner(mod)
        sink.reports["quantize"] = report.to_json()
        return out

    return _pass


_pipeline.register_stage("rewrite", "quantize", stage_factory, order=60)
