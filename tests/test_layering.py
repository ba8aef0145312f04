"""The package's layering, read from the source (imports parsed with ``ast``, nothing executed):

- the subpackages import each other one way only (no package imports one that imports it back);
- ``sim`` never imports ``envs``, ``agents``, ``bench``, ``commands`` or gymnasium; ``baselines``
  build on ``sim`` (and ``traces``) only; nothing below ``agents`` imports torch;
- ``import kvgym`` and ``import kvgym.sim`` load neither gymnasium nor torch (run in a fresh
  interpreter);
- no module reaches into another module's private registry (``_POLICIES`` ...);
- no import of the project's own modules is wrapped in ``except ImportError`` (a missing module of
  kvgym is a bug to see, not a fallback to take).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Top-level modules every layer may use (they import no subpackage).
BASE = {"errors", "params", "files", "callspec", "bundled", "configs"}
#: Where each installed package's source lives.
SOURCES = {"kvgym": ROOT / "kvgym", "kvgym.baselines": ROOT / "baselines", "kvgym.agents": ROOT / "agents"}


def layer_of_module(mod: str) -> str | None:
    """The layer an imported module belongs to (``kvgym.sim.engine`` -> ``sim``), None outside kvgym."""
    parts = mod.split(".")
    if parts[0] != "kvgym":
        return None
    if len(parts) == 1:
        return "top"
    if parts[1] in BASE or parts[1] == "__version__":  # the version string is data, not an entry point
        return "base"
    if parts[1] in ("baselines", "agents") or (ROOT / "kvgym" / parts[1]).is_dir():
        return parts[1]
    return "top"


def layer_of_file(path: Path) -> str:
    rel = path.relative_to(ROOT)
    if rel.parts[0] in ("baselines", "agents"):
        return rel.parts[0]
    if len(rel.parts) > 2:
        return rel.parts[1]
    return "base" if rel.stem in BASE else "top"


def sources() -> list[Path]:
    """Every library module (``kvgym/data`` holds data and the calibration's measurement script,
    which runs on a GPU machine, not as part of kvgym)."""
    return sorted(p for d in SOURCES.values() for p in d.rglob("*.py") if "data" not in p.relative_to(d).parts)


def imports(path: Path) -> list[tuple[str, ast.AST]]:
    return imports_in(ast.parse(path.read_text(), str(path)))


def edges() -> dict[str, dict[str, list[str]]]:
    """layer -> imported layer -> the files that import it."""
    e: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for f in sources():
        src = layer_of_file(f)
        for mod, _ in imports(f):
            dst = layer_of_module(mod)
            if dst is not None and dst != src:
                e[src][dst].append(str(f.relative_to(ROOT)))
    return e


def test_layers_import_each_other_one_way():
    e = edges()
    # "top" is kvgym/__init__.py and kvgym/cli.py: the entry points above every layer.
    graph = {a: set(b) - {"top"} for a, b in e.items() if a != "top"}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cyc = path[path.index(m):] + [m]
                detail = "; ".join(f"{a} -> {b} in {sorted(set(e[a][b]))[:3]}" for a, b in pairwise(cyc))
                raise AssertionError(f"import cycle {' -> '.join(cyc)}: {detail}")
            if m not in state:
                visit(m)
        path.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    for layer, deps in e.items():
        assert "top" not in deps or layer == "top", f"{layer} imports kvgym's entry points: {sorted(set(deps['top']))}"


def test_what_each_layer_may_import():
    e = edges()
    allowed = {
        "sim": {"base", "traces"},   # policies are found by name in the registry, never imported
        "traces": {"base"},
        "baselines": {"base", "sim", "traces"},
        "oracle": {"base", "sim", "traces"},
    }
    for layer, ok in allowed.items():
        bad = {d: sorted(set(f))[:3] for d, f in e[layer].items() if d not in ok}
        assert not bad, f"{layer} imports {bad}"


#: The one module outside ``agents`` that may import torch: capturing a Hugging Face model's
#: attention needs the model (the ``hf`` extra); its imports are inside functions, so
#: ``import kvgym`` stays torch-free (checked below).
TORCH_ALLOWED = {"kvgym/traces/hf_capture.py": {"torch"}}


def test_third_party_layers():
    ml = {"torch", "stable_baselines3", "sb3_contrib"}
    for f in sources():
        layer = layer_of_file(f)
        rel = str(f.relative_to(ROOT))
        mods = {m.split(".")[0] for m, _ in imports(f)}
        if layer in ("sim", "traces", "baselines", "oracle", "workloads"):
            assert "gymnasium" not in mods, f"{rel} imports gymnasium"
        if layer != "agents":
            bad = mods & ml - TORCH_ALLOWED.get(rel, set())
            assert not bad, f"{rel} imports {sorted(bad)}"


def test_import_kvgym_loads_neither_gymnasium_nor_torch():
    code = ("import sys, kvgym, kvgym.sim, kvgym.sim.serving; "
            "kvgym.sim.run; print(sorted(m for m in ('gymnasium', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_private_registry_access_across_modules():
    private = {}
    for f in sources():
        for node in ast.parse(f.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            for t in targets:
                if isinstance(t, ast.Name) and t.id.startswith("_") and t.id.isupper():
                    private.setdefault(t.id, set()).add(f)
    for f in sources():
        for mod, node in imports(f):
            if isinstance(node, ast.ImportFrom):
                names = [a.name for a in node.names if a.name in private and f not in private[a.name]]
                assert not names, f"{f.relative_to(ROOT)} imports the private {names} from {mod}"


def test_no_fallbacks_for_the_projects_own_modules():
    for f in sources():
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.Try):
                continue
            catches = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if not catches & {"ImportError", "ModuleNotFoundError", "(ImportError, ModuleNotFoundError)"}:
                continue
            own = [m for stmt in node.body for m, _ in imports_in(stmt) if layer_of_module(m) is not None]
            assert not own, f"{f.relative_to(ROOT)}:{node.lineno}: kvgym's own {own} imported under except ImportError"


def imports_in(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    """``(module, node)`` for every absolute import under ``tree``; ``from a import b`` gives
    ``a.b`` (``from kvgym import files`` is an import of ``kvgym.files``)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(f"{node.module}.{a.name}", node) for a in node.names]
    return out
