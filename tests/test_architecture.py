"""The layer rule of docs/architecture.md, read from the code's own imports: imports only point
down, client and hub never import each other, no module imports itself round in a cycle, and none
is loaded by name. (That only the storage backends import a database driver:
:mod:`tests.test_packaging`.)

Every import counts: module level, inside functions, and under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

HUB_LAYERS: tuple[tuple[str, ...], ...] = (
    # top: what a user runs
    (
        "apitally_hub",
        "apitally_hub.cli",
        "apitally_hub.commands",
        "apitally_hub.server",
        "apitally_hub.demo",
        "apitally_hub.report",
    ),
    ("apitally_hub.web",),  # HTTP: the app factory, ingest/query/alerting routes, the dashboard
    ("apitally_hub.config",),  # resolved once, from the command line and the environment
    ("apitally_hub.alerting",),  # domain: rules over the query layer's numbers
    ("apitally_hub.ingest", "apitally_hub.query"),  # domain: folding in, reading out
    ("apitally_hub.security", "apitally_hub.limits"),
    ("apitally_hub.storage",),  # one interface, one folder per backend
    ("apitally_hub.errors", "apitally_hub.log_throttle", "apitally_hub.options"),
    ("apitally_hub.protocol",),  # the wire contract: pure validators
)
"""The hub's layers, top to bottom: a module may import its own layer's modules and lower ones."""

CLIENT_LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "apitally_otel",
        "apitally_otel.auto",
        "apitally_otel.instrumentation",
        "apitally_otel._lifecycle",
        "apitally_otel._classic",
        "apitally_otel.starlette",
        "apitally_otel.fastapi",
    ),
    ("apitally_otel.metric_reader",),
    ("apitally_otel.span_processor", "apitally_otel.metric_exporter"),
    # the families: ASGI capture, request logging, hub transport, aggregation
    (
        "apitally_otel._asgi",
        "apitally_otel._request_log",
        "apitally_otel._hub",
        "apitally_otel._aggregator",
        "apitally_otel._metrics",
        "apitally_otel._sentry",
    ),
    # what every stage reads: configuration, names, small shared values
    (
        "apitally_otel._config",
        "apitally_otel.request_logging",
        "apitally_otel.environment_variables",
        "apitally_otel.otel_environment_variables",
        "apitally_otel._consumers",
        "apitally_otel._error_details",
        "apitally_otel._gil",
        "apitally_otel.version",
    ),
)
"""The client's layers, top to bottom (the ways in, the pipeline's stages, their families, the base)."""

DEMO_APP = "apitally_hub.demo.app"
"""The instrumented app the demo runs in a subprocess: the one hub module that imports the client."""


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, src: Path = SRC) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every import in the file, relative ones resolved; ``from
    package import name`` names the submodule when ``name`` is one."""
    name = module_name(path, src)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (candidate if _is_module(candidate, src) else base), node.lineno


def _is_module(name: str, src: Path) -> bool:
    path = src.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def all_modules(src: Path = SRC) -> dict[str, Path]:
    return {module_name(path, src): path for path in sorted(src.rglob("*.py"))}


def layer_of(module: str, layers: tuple[tuple[str, ...], ...]) -> int | None:
    """The index of the layer whose longest matching prefix holds ``module``."""
    best: tuple[int, int] | None = None
    for index, members in enumerate(layers):
        for member in members:
            inside = module == member or module.startswith(member + ".")
            if inside and (best is None or len(member) > best[1]):
                best = (index, len(member))
    return None if best is None else best[0]


def internal_edges(root: str, src: Path = SRC) -> list[tuple[str, str, int]]:
    edges = []
    for name, path in all_modules(src).items():
        if name.split(".")[0] != root:
            continue
        for target, line in imports_of(path, src):
            if target.split(".")[0] == root and target != name:
                edges.append((name, target, line))
    return edges


@pytest.mark.parametrize(("root", "layers"), [("apitally_hub", HUB_LAYERS), ("apitally_otel", CLIENT_LAYERS)])
def test_every_module_has_a_layer(root: str, layers: tuple[tuple[str, ...], ...]) -> None:
    unplaced = [m for m in all_modules() if m.split(".")[0] == root and layer_of(m, layers) is None]
    assert unplaced == [], (
        f"modules in no layer (add them to the layer list and docs/architecture.md): {unplaced}"
    )


def upward_imports(root: str, layers: tuple[tuple[str, ...], ...], src: Path = SRC) -> list[str]:
    upward = []
    for source, target, line in internal_edges(root, src):
        if target == root:  # the package's own __init__ is its public face, imported by nobody inside
            upward.append(f"{source}:{line} imports {target}")
            continue
        low, high = layer_of(source, layers), layer_of(target, layers)
        if low is not None and high is not None and high < low:
            upward.append(f"{source}:{line} imports {target} (layer {high} above {low})")
    return upward


def import_cycles(root: str, src: Path = SRC) -> list[str]:
    graph: dict[str, set[str]] = {}
    for source, target, _ in internal_edges(root, src):
        graph.setdefault(source, set()).add(target)
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


@pytest.mark.parametrize(("root", "layers"), [("apitally_hub", HUB_LAYERS), ("apitally_otel", CLIENT_LAYERS)])
def test_imports_only_point_down(root: str, layers: tuple[tuple[str, ...], ...]) -> None:
    assert upward_imports(root, layers) == []


@pytest.mark.parametrize("root", ["apitally_hub", "apitally_otel"])
def test_no_import_cycles(root: str) -> None:
    assert import_cycles(root) == []


def test_client_and_hub_never_import_each_other() -> None:
    crossing = []
    for name, path in all_modules().items():
        root = name.split(".")[0]
        other = {"apitally_hub": "apitally_otel", "apitally_otel": "apitally_hub"}[root]
        for target, line in imports_of(path):
            if target.split(".")[0] == other and name != DEMO_APP:
                crossing.append(f"{name}:{line} imports {target}")
    assert crossing == []


def test_no_module_is_loaded_by_name() -> None:
    found = []
    for name, path in all_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in ("import_module", "__import__")) or (
                isinstance(node, ast.Name) and node.id == "__import__"
            ):
                found.append(f"{name}:{node.lineno}")
    assert found == []


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    """The checks above can fail: on a small tree where storage imports the web layer (upward,
    TYPE_CHECKING only) and the web layer imports storage back (a cycle), both are found."""
    hub = tmp_path / "apitally_hub"
    (hub / "storage").mkdir(parents=True)
    (hub / "web").mkdir()
    for package in (hub, hub / "storage", hub / "web"):
        (package / "__init__.py").write_text("")
    (hub / "storage" / "base.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..web import app\n"
    )
    (hub / "web" / "app.py").write_text("from apitally_hub.storage.base import Storage\n")
    assert upward_imports("apitally_hub", HUB_LAYERS, tmp_path) == [
        "apitally_hub.storage.base:3 imports apitally_hub.web.app (layer 1 above 6)"
    ]
    assert import_cycles("apitally_hub", tmp_path) == [
        "apitally_hub.storage.base -> apitally_hub.web.app -> apitally_hub.storage.base"
    ]
