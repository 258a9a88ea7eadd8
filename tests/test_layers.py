"""The import contract of docs/CONTRACTS.md: each layer imports only the layers below it, and no
module imports itself back through others. Read from the source (every import, at module level or
inside a function), so a new upward import fails here before it tangles anything."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sda_web"

# Lowest first. Modules on one rung may not import each other's rung-mates of another package:
# training and generation are peers (what both need lives in model/).
LAYERS = [
    {"sda_web", "sda_web.storage"},
    {"sda_web.checkpoints"},
    {"sda_web.audio"},
    {"sda_web.datasets"},
    {"sda_web.model"},
    {"sda_web.training", "sda_web.generation"},
    {"sda_web.library"},
    {"sda_web.web"},
    {"sda_web.cli"},
]
PART_OF = {"sda_web.cli_progress": "sda_web.cli", "sda_web.cli_queue": "sda_web.cli"}  # the CLI's own modules


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported sda_web module, line, at module level) for every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] + ([f"{target}.{a.name}" for a in node.names] if not node.module or node.level else [])
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in targets:
            if target == "sda_web" or target.startswith("sda_web."):
                found.append((target, node.lineno, id(node) in top_level))
    return found


def layer_of(module: str) -> tuple[int, str]:
    """(rung, owning unit) of a module: its top-level package or module under sda_web."""
    parts = module.split(".")
    unit = ".".join(parts[:2]) if len(parts) > 1 else "sda_web"
    unit = PART_OF.get(unit, unit)
    for rung, units in enumerate(LAYERS):
        if unit in units:
            return rung, unit
    raise AssertionError(f"{module} is on no layer of LAYERS: add it to the contract")


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_import_goes_down_the_layers():
    wrong = []
    for name, path in all_modules().items():
        rung, unit = layer_of(name)
        for target, line, _ in imports(path):
            target_rung, target_unit = layer_of(target)
            if target_unit != unit and target_rung >= rung:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} {unit} imports {target_unit}")
    assert not wrong, "imports that do not go down the layers:\n" + "\n".join(sorted(set(wrong)))


def test_no_module_imports_itself_back():
    modules = all_modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _, at_top in imports(path):
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]  # `from pkg import name`: the module that holds it
            if at_top and target != name:
                graph[name].add(target)
    cycles, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_contract_sees_the_imports_it_guards():
    # The checker itself: it finds relative imports inside functions, which is where the upward
    # ones hid, and tells them from module-level ones.
    found = {(target, at_top) for target, _, at_top in imports(PACKAGE / "generation" / "after_training.py")}
    assert ("sda_web.generation.controls", False) in found
    assert layer_of("sda_web.web.app") > layer_of("sda_web.library.models") > layer_of("sda_web.training.runner")
