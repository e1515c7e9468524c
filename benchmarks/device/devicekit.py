"""A kit for a lent GPU machine (the `device` tool's `run`): what travels, in pieces that fit one call each.

A call carries the working tree and the paths it names, 64 MiB in all; this repository's tracked files alone are
larger (benchmarks/results/), and CIFAR-10 is 163 MiB. So the data travels as xz-compressed raw arrays in
chunks of about 47 MB, one chunk a call, rebuilt there into the npz files slimbench reads, each checked against
the digest taken here.

    python benchmarks/device/devicekit.py pack-data --src DIR --out .dev --chunks 3   # here: .dev/d1 .. d3
    python benchmarks/device/devicekit.py unpack-data .dev/d1 /root/cifar             # there, one chunk a call
    python benchmarks/device/devicekit.py size .dev/d1 .dev/whl                        # here: what a call carries

`setup.sh` (sourced at the start of each call) installs the carried wheels and unpacks the call's chunk;
`run_rows.sh` runs study rows side by side until a deadline and packs their stage directories into $OUT.
README.md beside this file says how a lease went with them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import subprocess
import sys
from pathlib import Path

import numpy as np

CALL_LIMIT = 64 * 2**20  # the working tree that travels with one call, carried paths included
SPLITS = ["train_1", "train_2", "train_3", "train_4", "train_5", "test"]
MANIFEST = "manifest.json"


def pack_data(src: Path, out: Path, chunks: int, preset: int = 6) -> list[Path]:
    """CIFAR-10's six npz files as xz raw arrays in ``chunks`` folders ``out/d1`` .. ``out/dN``, each with a manifest
    of shapes and sha256 digests, so that the machine there rebuilds exactly the arrays here."""
    present = [name for name in SPLITS if (src / f"{name}.npz").exists()]
    if not present:
        raise SystemExit(f"no CIFAR-10 npz files (train_1..5.npz, test.npz) in {src}")
    folders = [out / f"d{i + 1}" for i in range(max(1, min(chunks, len(present))))]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    manifests: list[dict[str, dict]] = [{} for _ in folders]
    for i, name in enumerate(present):
        k = i * len(folders) // len(present)  # consecutive files share a chunk
        with np.load(src / f"{name}.npz") as arrays:
            x, y = np.ascontiguousarray(arrays["x"], dtype=np.uint8), np.asarray(arrays["y"], dtype=np.uint8)
        (folders[k] / f"{name}.x.xz").write_bytes(lzma.compress(x.tobytes(), preset=preset))
        (folders[k] / f"{name}.y.xz").write_bytes(lzma.compress(y.tobytes(), preset=preset))
        manifests[k][name] = {"x_shape": list(x.shape), "y_shape": list(y.shape),
                              "x_sha256": hashlib.sha256(x.tobytes()).hexdigest(),
                              "y_sha256": hashlib.sha256(y.tobytes()).hexdigest()}
    for folder, manifest in zip(folders, manifests, strict=True):
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return folders


def unpack_data(chunk: Path, dest: Path) -> list[str]:
    """One chunk's arrays back into ``dest/NAME.npz`` (keys x and y, as the loader reads them), each checked against
    its digest; a chunk that does not match stops here rather than training on damaged images."""
    manifest = json.loads((chunk / MANIFEST).read_text())
    arrays = {}
    for name, entry in manifest.items():  # every array checked before any file is written
        x_bytes = lzma.decompress((chunk / f"{name}.x.xz").read_bytes())
        y_bytes = lzma.decompress((chunk / f"{name}.y.xz").read_bytes())
        for what, data in (("x", x_bytes), ("y", y_bytes)):
            if hashlib.sha256(data).hexdigest() != entry[f"{what}_sha256"]:
                raise SystemExit(f"{chunk / name}.{what}.xz does not match the digest taken when it was packed")
        arrays[name] = (np.frombuffer(x_bytes, dtype=np.uint8).reshape(entry["x_shape"]),
                        np.frombuffer(y_bytes, dtype=np.uint8).reshape(entry["y_shape"]))
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (x, y) in arrays.items():
        partial = dest / f".{name}.partial.npz"
        np.savez(partial, x=x, y=y)
        partial.replace(dest / f"{name}.npz")
        written.append(name)
    return written


def travelling_bytes(repo: Path, carry: list[str]) -> dict[str, int]:
    """What one call would carry: tracked and untracked-not-ignored files, and each carried path."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.split(b"\0")
    tree = sum((repo / name.decode()).stat().st_size for name in listed if name and (repo / name.decode()).is_file())
    sizes = {"working tree": tree}
    for path in carry:
        target = repo / path
        files = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
        sizes[path] = sum(p.stat().st_size for p in files)
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack-data", help="CIFAR-10 npz files -> xz chunks, one per call")
    pack.add_argument("--src", type=Path, required=True)
    pack.add_argument("--out", type=Path, default=Path(".dev"))
    pack.add_argument("--chunks", type=int, default=3)
    unpack = commands.add_parser("unpack-data", help="one chunk -> npz files, digests checked")
    unpack.add_argument("chunk", type=Path)
    unpack.add_argument("dest", type=Path)
    size = commands.add_parser("size", help="what one call carries, against the 64 MiB limit")
    size.add_argument("carry", nargs="*")
    size.add_argument("--repo", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    if args.command == "pack-data":
        for folder in pack_data(args.src, args.out, args.chunks):
            mib = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
            print(f"{folder}: {', '.join(sorted(json.loads((folder / MANIFEST).read_text())))} ({mib:.1f} MiB)")
    elif args.command == "unpack-data":
        print(f"{args.dest}: {', '.join(unpack_data(args.chunk, args.dest))} (digests match)")
    else:
        sizes = travelling_bytes(args.repo, args.carry)
        total = sum(sizes.values())
        for name, n in sizes.items():
            print(f"{name:<30} {n / 2**20:8.1f} MiB")
        print(f"{'total':<30} {total / 2**20:8.1f} MiB of {CALL_LIMIT / 2**20:.0f}")
        if total > CALL_LIMIT:
            print("over the limit: move the largest tracked folder aside for the call (benchmarks/results/), "
                  "or carry less", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
