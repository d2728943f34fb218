"""The house: modules import only their own stage or the stages below it, and building the
workflow's DAG does not load torch."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "src" / "polarity"

# Stage order, lowest first. A module may import its own stage and the stages below it.
STAGES = [
    ("foundation", ("polarity.files", "polarity.seeds", "polarity.settings")),
    ("libraries", ("polarity.algorithms", "polarity.reward", "polarity.metrics")),
    ("data", ("polarity.data",)),
    ("config checks", ("polarity.config",)),
    ("model", ("polarity.model",)),
    ("generation", ("polarity.generation",)),
    ("training backends", ("polarity.backends",)),
    ("evaluation", ("polarity.evaluation",)),
    ("report", ("polarity.report",)),
    ("command line", ("polarity.cli", "polarity.__main__")),
]


def stage_of(module: str) -> int:
    if module == "polarity":
        return 0  # the package's __init__ (a docstring and a version)
    for rank, (_, prefixes) in enumerate(STAGES):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} is in no stage: add it to STAGES")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every ``polarity`` module ``path`` imports, at the top or inside a function."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from . import a3po` names a module, not an attribute
            found |= {f"{target}.{a.name}" for a in node.names
                      if (PACKAGE.parent / (f"{target}.{a.name}".replace(".", "/") + ".py")).exists()}
    return {m for m in found if m == "polarity" or m.startswith("polarity.")}


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} ({STAGES[stage_of(module)][0]}) imports {target} ({STAGES[stage_of(target)][0]})"
        for module, targets in graph.items()
        for target in targets
        if stage_of(target) > stage_of(module)
    )


def test_every_module_imports_only_its_stage_or_below():
    graph = import_graph()
    assert len(graph) > 30 and any(graph.values())  # the walk found the package's imports
    assert upward_imports(graph) == []


def test_an_upward_import_is_caught():
    graph = {"polarity.data.hub": {"polarity.model"}, "polarity.model": {"polarity.data.rows"}}
    assert upward_imports(graph) == ["polarity.data.hub (data) imports polarity.model (model)"]


def test_relative_imports_resolve(tmp_path):
    warmup = PACKAGE / "backends" / "local" / "warmup.py"
    assert {"polarity.model", "polarity.generation.sampling"} <= imports_of(warmup)
    assert "polarity.algorithms.a3po" in imports_of(PACKAGE / "algorithms" / "pipeline.py")


def test_building_the_dag_does_not_import_torch(tmp_path):
    """`snakemake -n` on the default study with a `torch` that fails on import."""
    stub = tmp_path / "stub" / "torch"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('torch imported while building the DAG')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stub.parent), os.environ.get("PYTHONPATH", "")]),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
         str(tmp_path / "work"), "--configfile", str(REPO / "config.yaml"), "-n", "--quiet", "rules"],
        capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "train_local" in proc.stdout and "make_tiny_model" in proc.stdout
    # and the stub does stop an import of torch
    check = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert "torch imported while building the DAG" in check.stderr
