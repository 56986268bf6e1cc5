"""The code's shape: no import cycles, no private names across modules, light imports where
they must be, and ``python -m edgetune``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgetune"


def _python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter: what a module import loads depends on the process."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _nodes(tree: ast.AST):
    """Every node, except those under ``if TYPE_CHECKING:`` (annotations, not dependencies)."""
    for child in ast.iter_child_nodes(tree):
        test = child.test if isinstance(child, ast.If) else None
        if isinstance(test, (ast.Name, ast.Attribute)) and "TYPE_CHECKING" in ast.unparse(test):
            continue
        yield child
        yield from _nodes(child)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import in ``path``, at any depth."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in _nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("edgetune")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("edgetune"):
                out.append((target, [a.name for a in node.names]))
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, names in _imports(path):
            # `from pkg import mod` imports the submodule pkg.mod
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            for t in subs or [target]:
                if t in modules and t != name:
                    graph[name].add(t)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            # A package's __init__ re-exporting its own modules is not a cycle of logic.
            if n.startswith(m + "."):
                continue
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycles():
    """Counting imports inside functions too: a lazy import hides a cycle, it does not end it."""
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_no_module_imports_another_modules_private_names():
    found = []
    for path in PACKAGE.rglob("*.py"):
        for target, names in _imports(path):
            found += [
                f"{_module_name(path)}: {target}.{n}"
                for n in names
                if n.startswith("_") and not n.endswith("__")
            ]
    assert not found, found


def test_the_runtime_and_the_cli_import_light():
    code = (
        "import sys, edgetune.runtime, edgetune.cli, edgetune.formats.bundle\n"
        "print(sorted(m for m in ('torch', 'transformers', 'pandas', 'onnx', 'optimum', "
        "'datasets') if m in sys.modules))"
    )
    r = _python(code)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


# What ``import edgetune.runtime`` may load: the runtime, the bundle format, the task seam,
# entity grouping and the layers they stand on. A stage here (train, export, validate, data) is seconds of cold start on a
# device and a dependency the runtime install does not carry.
RUNTIME_MODULES = [
    "edgetune",
    "edgetune.arrays",
    "edgetune.entities",
    "edgetune.errors",
    "edgetune.formats",
    "edgetune.formats.bundle",
    "edgetune.fsutil",
    "edgetune.presets",
    "edgetune.runtime",
    "edgetune.runtime.check",
    "edgetune.runtime.classifier",
    "edgetune.runtime.inputs",
    "edgetune.runtime.passes",
    "edgetune.runtime.tagger",
    "edgetune.tasks",
    "edgetune.textio",
]


def test_the_runtime_loads_the_bundle_format_and_no_stage():
    code = (
        "import edgetune.runtime, sys\n"
        "print(sorted(m for m in sys.modules if m.startswith('edgetune')))\n"
        "print(sorted(m for m in ('edgetune.train', 'edgetune.export', 'edgetune.validate', "
        "'edgetune.data', 'torch', 'transformers') if m in sys.modules))"
    )
    r = _python(code)
    assert r.returncode == 0, r.stderr
    loaded, heavy = r.stdout.strip().splitlines()
    assert heavy == "[]"
    assert loaded == str(RUNTIME_MODULES)


@pytest.mark.parametrize(
    "before",
    [
        "import edgetune.train.signals",  # a submodule first: edgetune.train is the package
        "from edgetune.train import TrainingInterrupted, STEP_POINTS",
        "",  # edgetune.train reached through edgetune's lazy attribute first
    ],
)
def test_edgetune_train_trains_whichever_import_comes_first(before, tmp_path):
    missing = str(tmp_path / "none")
    code = (
        f"{before}\n"
        "import edgetune\n"
        "from edgetune import TrainConfig, train\n"
        "from edgetune.errors import RunError\n"
        "assert train is edgetune.train and edgetune.TrainConfig is TrainConfig\n"
        "assert edgetune.load_result is edgetune.train.load_result\n"
        "import edgetune.train.loop\n"  # a submodule after: the attribute still trains
        "for call in (edgetune.train, train):\n"
        "    try:\n"
        f"        call(output={missing!r}, resume=True)\n"
        "    except RunError as e:\n"
        "        print(e)\n"
        "edgetune.train.train = lambda *a, **k: ('wrapped', a, k)\n"
        "print(edgetune.train(1, x=2))\n"
    )
    r = _python(code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3 and all("no unfinished run at" in line for line in lines[:2]), lines
    assert lines[2] == "('wrapped', (1,), {'x': 2})"


def test_edgetune_names_its_lazy_attributes():
    import edgetune

    assert {"TrainConfig", "TrainResult", "load_result", "train", "__version__"} <= set(
        dir(edgetune)
    )
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        edgetune.nope  # noqa: B018


def test_python_dash_m_edgetune_is_the_command():
    r = subprocess.run(
        [sys.executable, "-m", "edgetune", "--help"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and "Usage: python -m edgetune" in r.stdout
    assert "train" in r.stdout and "predict" in r.stdout


def test_every_package_is_in_the_wheel():
    """pyproject lists packages explicitly (the presets folder is mapped in): none left out."""
    import tomllib

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    found = {_module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert found <= listed, found - listed


def _too_long(kinds: tuple[type, ...], limit: int) -> list[str]:
    """Definitions of these kinds spanning more than ``limit`` lines (decorators aside)."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, kinds) and node.end_lineno - node.lineno + 1 > limit:
                long.append(
                    f"{_module_name(path)}.{node.name} ({node.end_lineno - node.lineno + 1})"
                )
    return long


def test_no_class_over_250_lines():
    """A class does one job; the training loop's parts live beside it, not inside it."""
    assert not _too_long((ast.ClassDef,), 250)


def test_no_function_over_80_lines():
    """A function does one job; a longer one is phases waiting for names."""
    assert not _too_long((ast.FunctionDef, ast.AsyncFunctionDef), 80)


def test_only_the_cli_composes_stages_with_validate():
    """Measurement lives below the stages: only the CLI (and validate itself) use that stage."""
    users = [
        name
        for name, targets in _graph().items()
        if any(t == "edgetune.validate" or t.startswith("edgetune.validate.") for t in targets)
        and name != "edgetune.cli"
        and not name.startswith("edgetune.validate")
    ]
    assert not users, users


def test_the_package_runs_on_its_oldest_python():
    """pyproject claims Python 3.10: nothing newer is used unguarded (tomllib falls back to
    tomli below 3.11). vermin reads the syntax and the standard-library names each file uses."""
    import shutil

    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent))
    if vermin is None:
        pytest.skip("vermin (the dev extra) is not installed")
    r = subprocess.run(
        [vermin, "--no-tips", "--violations", "--eval-annotations", "-t=3.10-", str(PACKAGE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]
