"""The package order: a package imports only packages below it (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "slimbench"

# Lowest first. Each package may import the packages of earlier layers, never one of its own layer or above.
LAYERS: list[set[str]] = [
    {"errors"},
    {"config", "hardware", "runs"},
    {"data", "models"},
    {"artifact"},  # the format: artifacts, lineage records, sidecars, hashes
    {"plotting"},
    {"runtimes"},  # exported formats and the engines that run them
    {"measure"},
    {"sparsity"},  # pruning configs, layer selection, masks: what the trainer needs of pruning
    {"train"},
    {"compress"},  # prune and quantize stages, which fine-tune with the trainer
    {"score"},
    {"export"},
    {"study"},
    {"cli"},
]
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}


def _imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "slimbench" and len(parts) > 1:
                found.append((parts[1], node.lineno))
    return found


def test_every_package_is_placed():
    packages = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
                if (p.suffix == ".py" and p.stem not in ("__init__", "__main__")) or (p / "__init__.py").exists()}
    assert packages == set(RANK), f"place these in LAYERS: {packages ^ set(RANK)}"


def test_no_package_imports_one_above_it():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        own = relative.parts[0].removesuffix(".py")
        if own in ("__init__", "__main__"):
            continue
        for target, line in _imports(path):
            if target != own and target in RANK and RANK[target] >= RANK[own]:
                upward.append(f"{relative}:{line} ({own}) imports {target}")
    assert not upward, "\n".join(upward)


def test_the_check_would_catch_an_upward_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from slimbench.study.runner import run_study\n")
    assert _imports(probe) == [("study", 2)] and RANK["study"] > RANK["measure"]
