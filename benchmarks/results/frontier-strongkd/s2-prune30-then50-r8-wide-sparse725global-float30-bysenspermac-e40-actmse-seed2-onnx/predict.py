"""Classify images with model.lowbit.onnx using NumPy and ONNX Runtime only (written by slimbench export).

    pip install numpy onnxruntime
    python predict.py images.npy     # uint8 RGB images shaped [N, 32, 32, 3] (or one [32, 32, 3])
    python predict.py cat.png dog.jpg  # picture files, resized to 32 x 32 (needs Pillow)

or, from Python: `from predict import classify; classify(images)` -> class names.
"""

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

MODEL = Path(__file__).with_name("model.lowbit.onnx")
HEIGHT, WIDTH = 32, 32
# (x / 255 - mean) / std per RGB channel, written as the one multiply-add the training pipeline uses
MEAN = np.array([0.49139968, 0.48215841, 0.44653091], dtype=np.float64)
STD = np.array([0.24703223, 0.24348513, 0.26158784], dtype=np.float64)
SCALE = (1.0 / (255.0 * STD)).astype(np.float32).reshape(1, 3, 1, 1)
SHIFT = (-MEAN / STD).astype(np.float32).reshape(1, 3, 1, 1)
CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']

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
