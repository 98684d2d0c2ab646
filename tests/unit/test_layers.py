"""The layers of the code, checked on every module's imports (a short AST walk, no import-linter).

    commands/, bench/                      the floor above: CLI, demo, local stack, benchmarks
    ingest/  stream/  sinks/  outbound/    the services: never each other, never a floor above
    postbacks/                             the shared core: settings, logs, topics, catalog...
    schemas/                               the records: nothing of ours

Why an AST walk and not import-linter: the whole rule set is the table below, the walk sees every
`import` (also the lazy ones inside functions and under TYPE_CHECKING, which is where a layer leak
usually hides), it names file and line when it fails, and it adds no dependency. What it cannot
see is an import by a computed name (stream/registry.py imports rule plugins named in settings):
those are the operator's plugins, not our modules. tests/ may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SERVICES = ("ingest", "stream", "sinks", "outbound")
OURS = frozenset({"commands", "bench", *SERVICES, "postbacks", "schemas", "tests"})
# Which of our top-level packages each package may import (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "schemas": frozenset(),
    "postbacks": frozenset({"schemas"}),
    **{service: frozenset({"postbacks", "schemas"}) for service in SERVICES},
    "bench": frozenset({"commands", *SERVICES, "postbacks", "schemas"}),
    "commands": frozenset({"bench", *SERVICES, "postbacks", "schemas"}),
}


def imported_packages(source: str, module: str) -> list[tuple[str, int]]:
    """Our top-level packages `source` (the module named `module`) imports, with line numbers."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the importing module's own package
                base = module.split(".")[: -node.level]
                names = [".".join([*base, node.module] if node.module else base)]
            elif node.module:
                names = [node.module]
        found += [(name.split(".")[0], node.lineno) for name in names if name.split(".")[0] in OURS]
    return found


def violations(package: str, module: str, source: str) -> list[str]:
    return [
        f"{module}:{line} imports {target} ({package} may import only {sorted(ALLOWED[package])})"
        for target, line in imported_packages(source, module)
        if target != package and target not in ALLOWED[package]
    ]


def modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below(package: str) -> None:
    files = modules(package)
    assert files, f"{package}/ has no modules: the layer table names a package that moved"
    found: list[str] = []
    for path in files:
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        found += violations(package, module, path.read_text())
    assert found == []


def test_every_package_is_in_a_layer() -> None:
    """A new top-level package must be given a place in the table, not slip past the check."""
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests"}
    assert packages == set(ALLOWED)


@pytest.mark.parametrize(
    ("package", "source", "expected"),
    [
        ("outbound", "from ingest.auth import sign\n", ["outbound.plan:1 imports ingest"]),
        ("postbacks", "def f():\n    from commands.cli import main\n", ["postbacks.plan:2 imports commands"]),
        ("schemas", "import postbacks.settings\n", ["schemas.plan:1 imports postbacks"]),
        ("stream", "import typing\nif typing.TYPE_CHECKING:\n    import sinks\n", ["stream.plan:3"]),
        ("sinks", "from ..bench import runner\n", ["sinks.plan:1 imports bench"]),
        ("commands", "import ingest, stream, sinks, outbound, bench, postbacks\n", []),
        ("ingest", "import json\nfrom postbacks.settings import Settings\nfrom ingest import auth\n", []),
    ],
)
def test_the_check_catches_a_leak(package: str, source: str, expected: list[str]) -> None:
    found = violations(package, f"{package}.plan", source)
    assert [f[: len(e)] for f, e in zip(found, expected, strict=True)] == expected
