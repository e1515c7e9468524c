import lzma, sys, numpy as np
src = "/work/shared/data/cifar10"
for dest, names in (("d1", ["train_1", "train_2"]), ("d2", ["train_3", "train_4"]), ("d3", ["train_5", "test"])):
    for n in names:
        d = np.load(f"{src}/{n}.npz")
        open(f".dev/{dest}/{n}.x.raw.xz", "wb").write(lzma.compress(np.ascontiguousarray(d["x"]).tobytes(), preset=6))
        np.save(f".dev/{dest}/{n}.y.npy", d["y"])
        print(dest, n, flush=True)
