"""Measure: engines side by side (this toolkit, stock TVM, PyTorch, ONNX Runtime, LiteRT)."""
