"""`predict.py` beside every export: the model run with NumPy and its runtime only (ONNX Runtime, or LiteRT's
interpreter for .tflite files), no slimbench, no torch.

The exported graph starts at normalised float input, so whoever deploys it must reproduce the training
pipeline's preprocessing exactly; the script carries the constants and the class names, and the export
tests run it against the PyTorch model.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

from slimbench.artifact import atomic_write
from slimbench.data import CIFAR_MEAN, CIFAR_STD
from slimbench.errors import ExportError

# The script is one template: the header and the runtime's part (how the file is loaded and run) differ per
# runtime; the input checks, normalisation, class names and command line are the same for every export.
_SCRIPT = Template('''"""Classify images with $model_file using NumPy and $runtime only (written by slimbench export).

    pip install numpy $package
    python predict.py images.npy     # uint8 RGB images shaped [N, $height, $width, 3] (or one [$height, $width, 3])
    python predict.py cat.png dog.jpg  # picture files, resized to $width x $height (needs Pillow)

or, from Python: `from predict import classify; classify(images)` -> class names.
$notes"""

import sys
from pathlib import Path

import numpy as np
$import_runtime

MODEL = Path(__file__).with_name("$model_file")
HEIGHT, WIDTH = $height, $width
# (x / 255 - mean) / std per RGB channel, written as the one multiply-add the training pipeline uses
MEAN = np.array($mean, dtype=np.float64)
STD = np.array($std, dtype=np.float64)
SCALE = (1.0 / (255.0 * STD)).astype(np.float32).reshape(1, 3, 1, 1)
SHIFT = (-MEAN / STD).astype(np.float32).reshape(1, 3, 1, 1)
CLASSES = $classes
$run_model

def logits(images):
    """uint8 RGB images [N, H, W, 3] (or one [H, W, 3]) -> float32 logits [N, outputs]."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (HEIGHT, WIDTH, 3):
        raise ValueError(f"expected uint8 RGB images shaped [N, {HEIGHT}, {WIDTH}, 3], "
                         f"got {images.dtype} {list(images.shape)}")
    return _run(images.transpose(0, 3, 1, 2).astype(np.float32) * SCALE + SHIFT).astype(np.float32)


def classify(images):
    """uint8 RGB images -> class names (an output beyond the dataset's classes is named by its index)."""
    return [CLASSES[i] if i < len(CLASSES) else f"output {i}" for i in logits(images).argmax(1)]


def read_pictures(paths):
    """Picture files (PNG, JPEG, ...) -> uint8 RGB [N, H, W, 3], each resized to the model's input size."""
    try:
        from PIL import Image
    except ImportError:
        sys.exit("reading pictures needs Pillow (pip install pillow); or pass a .npy file of uint8 images")
    return np.stack([np.asarray(Image.open(path).convert("RGB").resize((WIDTH, HEIGHT), Image.BILINEAR))
                     for path in paths])


if __name__ == "__main__":
    files = sys.argv[1:]
    if not files:
        sys.exit("usage: python predict.py images.npy | picture.png [picture.jpg ...]")
    if len(files) == 1 and files[0].endswith(".npy"):
        names, images = None, np.load(files[0])
    else:
        names, images = files, read_pictures(files)
    for i, label in enumerate(classify(images)):
        print(names[i] if names else i, label)
''')

_ONNX_RUN = '''
_session = None


def _run(x):
    """Normalised float images [N, 3, H, W] -> logits, through ONNX Runtime."""
    global _session
    if _session is None:
        _session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    entry = _session.get_inputs()[0]
    if entry.type == "tensor(float16)":
        x = x.astype(np.float16)
    batch = entry.shape[0]
    if not isinstance(batch, int):  # exported with a dynamic batch
        return _session.run(None, {entry.name: x})[0]
    outputs = []  # a fixed-batch export: feed whole batches, the last one padded
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        real = len(chunk)
        if real < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - real, *chunk.shape[1:]), chunk.dtype)])
        outputs.append(_session.run(None, {entry.name: chunk})[0][:real])
    return np.concatenate(outputs)
'''

_LITERT_RUN = '''
_interpreter = None


def _run(x):
    """Normalised float images [N, 3, H, W] -> logits, one image per call through the LiteRT interpreter."""
    global _interpreter
    if _interpreter is None:
        _interpreter = Interpreter(model_path=str(MODEL), num_threads=1)
        _interpreter.allocate_tensors()
    entry, out = _interpreter.get_input_details()[0], _interpreter.get_output_details()[0]
    in_scale, in_zero = entry["quantization"]
    out_scale, out_zero = out["quantization"]
    outputs = []
    for image in x:
        if np.issubdtype(entry["dtype"], np.integer):
            info = np.iinfo(entry["dtype"])
            image = np.clip(np.rint(image / in_scale + in_zero), info.min, info.max)
        _interpreter.set_tensor(entry["index"], image[None].astype(entry["dtype"]))
        _interpreter.invoke()
        y = _interpreter.get_tensor(out["index"])[0]
        outputs.append((y.astype(np.float32) - out_zero) * out_scale if np.issubdtype(y.dtype, np.integer) else y)
    return np.stack(outputs)
'''

_RUNTIMES = {
    "onnx": {"runtime": "ONNX Runtime", "package": "onnxruntime", "import_runtime": "import onnxruntime as ort",
             "run_model": _ONNX_RUN, "notes": ""},
    "tflite": {"runtime": "LiteRT", "package": "ai-edge-litert",
               "import_runtime": "from ai_edge_litert.interpreter import Interpreter", "run_model": _LITERT_RUN,
               "notes": "\nThe file takes one image at a time, as a microcontroller runs it. An int8 file takes int8 input: the\n"
                        "normalised image is quantized here with the file's own scale and zero point, and the int8 logits are\n"
                        "dequantized the same way, exactly what the device-side code has to do.\n"},
}


def write_predict_script(out_dir: Path, model_file: Path, classes: tuple[str, ...],
                         image_shape: tuple[int, ...]) -> Path:
    """Write ``out_dir/predict.py`` for ``model_file`` (an ONNX file in ``out_dir``)."""
    return _write("onnx", out_dir, model_file, classes, image_shape)


def write_tflite_predict_script(out_dir: Path, model_file: Path, classes: tuple[str, ...],
                                image_shape: tuple[int, ...]) -> Path:
    """Write ``out_dir/predict.py`` for ``model_file`` (a .tflite file in ``out_dir``)."""
    return _write("tflite", out_dir, model_file, classes, image_shape)


def _write(runtime: str, out_dir: Path, model_file: Path, classes: tuple[str, ...],
           image_shape: tuple[int, ...]) -> Path:
    channels, height, width = image_shape
    if channels != 3:
        raise ExportError(f"predict.py handles RGB images; this model takes {channels} channels")
    script = _SCRIPT.substitute(**_RUNTIMES[runtime], model_file=model_file.name, height=height, width=width,
                                mean=repr(list(CIFAR_MEAN)), std=repr(list(CIFAR_STD)),
                                classes=repr(list(classes)))
    path = out_dir / "predict.py"
    atomic_write(path, script.encode())
    return path
