"""The package's layout keeps its promises: imports point one way, no cycles, small
modules, aiohttp only where the serving happens, wire frames built only by the protocol."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "server" / "tether"
MAX_LINES = 500

# Layers, lowest first: a module may import only from its own layer or a lower one.
LAYERS = [
    ("tether.errors", 0),
    ("tether.settings", 1),
    ("tether.protocol", 2),
    ("tether.cluster.channels", 2),
    ("tether.store", 3),
    ("tether.app", 4),
    ("tether.core", 5),
    ("tether.cluster", 6),
    ("tether.server", 7),
    ("tether.client", 7),
    ("tether.loadtest", 8),
    ("tether.demo", 8),
    ("tether.cli", 9),
    ("tether.__main__", 10),
    ("tether", 9),
]

MESSAGE_TYPES = {
    "welcome", "result", "error", "partial", "queued", "started", "event", "subscribed",
    "unsubscribed", "pong", "submit", "cancel", "ping", "subscribe", "unsubscribe",
}  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    for prefix, rank in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")
    if node.level:
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    if not target.startswith("tether"):
        return []
    names = [f"{target}.{alias.name}" for alias in node.names]
    found = [n for n in names if n in MODULES]  # `from . import routes` imports a module
    return found or [target]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _skipped(node: ast.stmt, top_level_only: bool) -> bool:
    if isinstance(node, ast.If):
        return _is_type_checking(node)
    return top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))


def imports(module: str, *, top_level_only: bool = True) -> set[str]:
    """The tether modules ``module`` imports when it is imported (not under TYPE_CHECKING,
    not inside functions, unless ``top_level_only`` is False)."""
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                found.update(_resolve(module, node))
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("tether"))
            elif _skipped(node, top_level_only):
                continue
            elif hasattr(node, "body"):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit(getattr(node, field, []))

    visit(tree.body)
    return {m for m in found if m != module}


def test_every_module_belongs_to_a_layer_and_imports_only_downwards() -> None:
    wrong = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module in MODULES
        for target in imports(module)
        if layer(target) > layer(module)
    ]
    assert not wrong, "\n".join(wrong)


def test_no_modules_import_each_other_in_a_cycle() -> None:
    graph = {module: imports(module) & MODULES.keys() for module in MODULES}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                walk(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_the_size_a_reader_takes_in(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by concept"


def test_only_the_server_package_imports_the_aiohttp_server() -> None:
    offenders = []
    for module, path in MODULES.items():
        text = path.read_text()
        if ("from aiohttp import" in text or "import aiohttp" in text) and not module.startswith(
            ("tether.server", "tether.loadtest")  # the load tester is an aiohttp *client*
        ):
            offenders.append(module)
        if module.startswith("tether.loadtest") and "web." in text and "aiohttp" in text:
            offenders.append(module)
    assert not offenders


def _frames_built_by_hand(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "type"
                    and isinstance(value, ast.Constant)
                    and value.value in MESSAGE_TYPES
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} ({value.value})")
    return found


def test_no_module_outside_the_protocol_package_builds_a_wire_frame_by_hand() -> None:
    paths = [p for m, p in MODULES.items() if not m.startswith("tether.protocol")]
    # bench/servers.py is exempt: its bare baselines are aiohttp + orjson and nothing of
    # tether, by definition (they are what tether is measured against).
    paths += sorted(p for p in (ROOT / "bench").glob("*.py") if p.name != "servers.py")
    found = [hit for path in paths for hit in _frames_built_by_hand(path)]
    assert not found, "use tether.protocol's encoders:\n" + "\n".join(found)


def test_the_layout_rules_see_the_imports_they_check() -> None:
    # Guards against a checker that passes because it finds nothing.
    assert "tether.protocol.codes" in imports("tether.protocol.server") | imports("tether.protocol")
    assert "tether.core.session" in imports("tether.server.websocket")
    assert "tether.core.session" not in imports("tether.core.resume")  # TYPE_CHECKING only
    assert _frames_built_by_hand(PACKAGE / "protocol" / "client.py")


def test_every_package_is_in_the_wheel() -> None:
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    packages = {module_name(p.parent / "__init__.py") for p in PACKAGE.rglob("__init__.py")}
    assert packages <= listed, f"add to pyproject.toml's packages: {sorted(packages - listed)}"
