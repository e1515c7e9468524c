"""Export to ONNX (float32, float16, int8, low-bit), LiteRT (float32, int8) or TorchScript with a parity check
against PyTorch and a model card. Formats are plug-ins (:func:`register_format`); conversion itself (ONNX, LiteRT)
lives in slimbench.runtimes."""

from slimbench.export import tflite as _tflite  # noqa: F401  (registers the tflite format)
from slimbench.export.stage import FORMATS, ExportFormat, ExportJob, ExportResult, export, register_format
from slimbench.runtimes.onnx import Parity, check_parity, export_onnx

__all__ = ["FORMATS", "ExportFormat", "ExportJob", "ExportResult", "Parity", "check_parity", "export", "export_onnx",
           "register_format"]
