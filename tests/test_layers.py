"""The layering ARCHITECTURE.md describes: stages import library modules, never the reverse,
and importing a module changes nothing in the process."""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"
STAGES = frozenset(re.findall(r"python -m pipeline\.(\w+)", (ROOT / "dvc.yaml").read_text()))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``pipeline.*`` module a file imports, at any depth (lazy imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "pipeline":
                out |= {f"pipeline.{a.name}" for a in node.names}
            elif node.module.startswith("pipeline."):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("pipeline.")}
    return out


def is_stage(module: str) -> bool:
    parts = module.split(".")
    return len(parts) == 2 and parts[1] in STAGES


LIBRARY = sorted(module_name(p) for p in PACKAGE.rglob("*.py") if not is_stage(module_name(p)))


def test_the_stages_are_read_from_dvc_yaml():
    assert {"ingest", "split", "augment", "features", "train", "evaluate", "protocol", "demo"} <= STAGES
    assert all((PACKAGE / f"{s}.py").is_file() for s in STAGES)


@pytest.mark.parametrize("module", LIBRARY)
def test_no_library_module_imports_a_stage(module):
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    stages = sorted(m for m in imported_modules(path) if is_stage(m))
    assert not stages, (f"library module {module} imports stage module(s) {stages}; move what it needs into a "
                        "library module that both import (see ARCHITECTURE.md)")


def test_the_import_check_sees_lazy_imports(tmp_path):
    """The check above can fail: a lazy import of a stage inside a function is found."""
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from pipeline.evaluate import main\n    from pipeline import split, vocab\n")
    assert {m for m in imported_modules(f) if is_stage(m)} == {"pipeline.evaluate", "pipeline.split"}


IMPORT_ALL = """
import importlib, json, os, pkgutil, sys
import pipeline.egemaps
pipeline.egemaps.preload()       # the third-party libraries first: their own import-time settings are theirs
import keras, librosa, tensorflow, uvicorn, fastapi, matplotlib  # noqa: F401  (keras imports pyplot)
before = dict(os.environ)
backend = matplotlib.rcParams._get("backend")
names = sorted(m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline."))
for name in names:
    importlib.import_module(name)
import pipeline.stage
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
print(json.dumps({"modules": names, "env": changed,
                  "backend_set": matplotlib.rcParams._get("backend") is not backend,
                  "allocator": pipeline.stage.keep_freed_memory.cache_info().currsize}))
"""


def test_importing_every_module_changes_nothing_in_the_process():
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"pipeline.train", "pipeline.plots", "pipeline.extraction", "pipeline.webapp"} <= set(seen["modules"])
    assert seen["env"] == [], f"importing the package set environment variable(s) {seen['env']}"
    assert not seen["backend_set"], "importing the package chose a matplotlib backend"
    assert seen["allocator"] == 0, "importing the package tuned the allocator"


def module_file(module: str) -> Path | None:
    path = ROOT / (module.replace(".", "/") + ".py")
    if path.is_file():
        return path
    path = ROOT / module.replace(".", "/") / "__init__.py"
    return path if path.is_file() else None


def pipeline_imports(module: str) -> set[str]:
    """Every pipeline module ``module`` imports, directly or through others (lazy imports too)."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for name in imported_modules(module_file(m)):
            parts = name.split(".")
            todo += [".".join(parts[:i]) for i in range(2, len(parts) + 1) if module_file(".".join(parts[:i]))]
    return seen


def as_dependency(module: str) -> str:
    """The path dvc.yaml names for a module: a package's folder, or the module's file."""
    parts = module.split(".")
    if len(parts) > 2 or (ROOT / parts[0] / parts[1]).is_dir():
        return "/".join(parts[:2])
    return "/".join(parts) + ".py"


def test_every_stage_depends_on_every_module_it_runs():
    """Otherwise `dvc repro` keeps a stale output after a change to a module the stage imports."""
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    problems = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        module = re.search(r"-m (pipeline\.\w+)", body["cmd"]).group(1)
        needed = {as_dependency(m) for m in pipeline_imports(module)} - {"pipeline/__init__.py"}
        declared = {d for d in body["deps"] if str(d).startswith("pipeline")}
        if needed != declared:
            problems[name] = {"missing": sorted(needed - declared), "not imported": sorted(declared - needed)}
    assert not problems, f"dvc.yaml deps differ from what the stages import: {problems}"
