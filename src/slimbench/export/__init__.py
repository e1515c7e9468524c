"""Export to ONNX (float32, float16, int8) with a parity check against PyTorch and a model card."""

from slimbench.export.stage import ExportResult, export
from slimbench.runtimes.onnx import Parity, check_parity, export_onnx

__all__ = ["ExportResult", "Parity", "check_parity", "export", "export_onnx"]
