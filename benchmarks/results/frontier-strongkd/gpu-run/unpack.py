"""Rebuild CIFAR-10 npz files (keys x, y) from the raw .xz chunks this call carries."""
import lzma, pathlib, sys
import numpy as np
src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for xz in sorted(src.glob("*.x.raw.xz")):
    name = xz.name.split(".")[0]
    x = np.frombuffer(lzma.decompress(xz.read_bytes()), dtype=np.uint8).reshape(-1, 32, 32, 3)
    y = np.load(src / f"{name}.y.npy")
    np.savez(dest / f"{name}.npz", x=x, y=y)
    print(name, x.shape, y.shape, int(x.astype(np.int64).sum() % 1000003))
