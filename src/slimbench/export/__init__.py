"""Export to ONNX (float32, float16, int8) with a parity check against PyTorch and a model card."""

from slimbench.export.onnx import Parity, check_parity, export_onnx
from slimbench.export.stage import ExportResult, export

__all__ = ["ExportResult", "Parity", "check_parity", "export", "export_onnx"]
