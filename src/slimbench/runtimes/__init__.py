"""Exported formats and the engines that run them: ONNX conversion (float, half, low-bit QCDQ), ONNX Runtime
sessions, and the parity gate that holds an exported file to the PyTorch model it came from. Stages above
(quantize, export, measure) convert and run models through this package."""

from slimbench.runtimes.onnx import DEFAULT_OPSET, Parity, check_parity, compare_logits, export_onnx, onnx_session

__all__ = ["DEFAULT_OPSET", "Parity", "check_parity", "compare_logits", "export_onnx", "onnx_session"]
