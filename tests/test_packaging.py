"""The distribution's two packages: the client installs alone, the hub's server and drivers come
with its extras and stay in their place (that neither package imports the other:
:mod:`tests.test_architecture`)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _requirements() -> list[tuple[str, str | None]]:
    """(distribution name, extra or None) for every requirement of apitally-otel."""
    result = []
    for requirement in importlib.metadata.requires("apitally-otel") or []:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)
        extra = re.search(r"extra\s*==\s*['\"]([\w-]+)['\"]", requirement)
        assert name is not None
        result.append((name.group(0).lower(), extra.group(1) if extra else None))
    return result


def test_the_client_alone_installs_no_server_or_database_driver() -> None:
    base = {name for name, extra in _requirements() if extra is None}
    assert base >= {"opentelemetry-sdk", "starlette", "httpx"}
    assert not base & {"uvicorn", "jinja2", "psycopg", "psycopg-pool", "fastapi"}


def test_the_hub_extra_brings_the_server() -> None:
    hub = {name for name, extra in _requirements() if extra == "hub"}
    assert "uvicorn" in hub


def test_importing_the_hub_package_needs_no_server() -> None:
    # ``apitally_hub`` resolves its public names lazily, so the CLI can print the install hint.
    tree = ast.parse((SRC / "apitally_hub" / "__init__.py").read_text())
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= {"__future__", "importlib", "typing"}


def test_the_postgres_extra_brings_psycopg_and_its_pool() -> None:
    assert {name for name, extra in _requirements() if extra == "postgres"} == {"psycopg", "psycopg-pool"}


def test_only_the_backends_import_a_database_driver() -> None:
    drivers = {"sqlite3": "sqlite", "psycopg": "postgres", "psycopg_pool": "postgres"}
    offenders = {}
    storage = SRC / "apitally_hub" / "storage"
    for path in sorted((SRC / "apitally_hub").rglob("*.py")):
        backend = path.relative_to(storage).parts[0] if path.is_relative_to(storage) else None
        used = {m.split(".")[0] for m in _imported_modules(path)} & set(drivers)
        wrong = {m for m in used if drivers[m] != backend}
        if wrong:
            offenders[str(path.relative_to(SRC))] = sorted(wrong)
    assert offenders == {}


def test_the_client_never_imports_sentry_or_loguru() -> None:
    # It links to them only when the app has imported them (``sys.modules``); no import statement.
    offenders = {
        str(path.relative_to(SRC)): sorted(used)
        for path in sorted((SRC / "apitally_otel").rglob("*.py"))
        if (used := {m.split(".")[0] for m in _imported_modules(path)} & {"sentry_sdk", "loguru"})
    }
    assert offenders == {}
