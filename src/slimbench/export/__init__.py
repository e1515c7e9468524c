"""Export to ONNX (float32, float16, int8, low-bit) or TorchScript with a parity check against PyTorch and a
model card. Formats are plug-ins (:func:`register_format`); ONNX conversion itself lives in slimbench.runtimes."""

from slimbench.export.stage import FORMATS, ExportFormat, ExportJob, ExportResult, export, register_format
from slimbench.runtimes.onnx import Parity, check_parity, export_onnx

__all__ = ["FORMATS", "ExportFormat", "ExportJob", "ExportResult", "Parity", "check_parity", "export", "export_onnx",
           "register_format"]
