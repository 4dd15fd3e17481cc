"""Import directions between the exporter's packages, read from the source with ``ast`` (nothing is imported).

The layout is a pipeline with a pure core:

- ``exporter.snapshot.*`` (the core) imports only itself and the shared modules,
  and no I/O library;
- ``exporter.chain.*``, ``exporter.history.*`` and ``exporter.serving.*`` import
  the core, the shared modules and their own package, never each other;
- only the top-level modules (``exporter.app``, ``exporter.cli``,
  ``exporter.refresh``, ...) wire packages together;
- nothing under exporter/ imports the simulated node or the tests.

The shared modules are ``exporter.config``, ``exporter.ss58`` and the package
root ``exporter`` (``__version__``); they import only each other, so allowing
them lets nothing else in through the back door. Every import counts: at module
level, inside functions, under ``if TYPE_CHECKING``, and ``importlib.import_module``
or ``__import__`` of a literal name.

And the modules' size: one past ``MAX_MODULE_LINES`` has grown a second job
inside it, to be split out into a module of its own.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Iterator, NamedTuple

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "exporter"
PACKAGES = ("snapshot", "chain", "history", "serving")
CORE = "snapshot"
SHARED = frozenset({"exporter", "exporter.config", "exporter.config_error", "exporter.yaml_safe", "exporter.ss58"})  # config_error and yaml_safe: split out of config
# Libraries that do I/O or run things concurrently: none of them in the pure core.
IO_LIBRARIES = frozenset({
    "bittensor", "sqlite3", "socket", "http", "prometheus_client", "threading", "asyncio",
    "concurrent", "multiprocessing", "subprocess", "selectors", "ssl", "urllib", "websockets", "sentry_sdk",
})
NEVER_FROM_EXPORTER = frozenset({"simnode", "tests"})

# Violations that exist today and are being removed (another change is taking
# them out). An entry is (importer, imported module); delete it when the import
# goes: test_the_allowlist_lists_only_current_violations says when. Empty now:
# the three cross imports of b0f596b (history.writer -> serving.status and
# serving.change_counters, serving.status -> chain.wire) are gone.
ALLOWED_FOR_NOW: frozenset[tuple[str, str]] = frozenset({
    # ("exporter.history.writer", "exporter.serving.status"),  # being removed
})


class Import(NamedTuple):
    importer: str  # module name, e.g. exporter.history.writer
    target: str  # the module imported (a submodule when ``from pkg import submodule``)
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.lru_cache(maxsize=1)
def our_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[Import]:
    return imports_in(name, path.read_text(encoding="utf-8"), known, is_package=path.name == "__init__.py")


def imports_in(name: str, source: str, known: set[str], *, is_package: bool = False) -> Iterator[Import]:
    """What module ``name`` (its text ``source``) imports; ``known``: our module names."""
    tree = ast.parse(source, name)
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield Import(name, submodule if submodule in known else base, node.lineno)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                yield Import(name, node.args[0].value, node.lineno)


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


@functools.lru_cache(maxsize=1)
def all_imports() -> tuple[Import, ...]:
    modules = our_modules()
    known = set(modules)
    return tuple(imp for name, path in modules.items() for imp in imports_of(name, path, known))


def layer(module: str) -> str:
    """A package (``snapshot``, ``chain``, ...), ``shared``, ``top`` (exporter's top level) or ``external``."""
    parts = module.split(".")
    if parts[0] != "exporter":
        return "external"
    if module in SHARED:
        return "shared"
    if len(parts) > 1 and parts[1] in PACKAGES:
        return parts[1]
    return "top"


def problem(imp: Import) -> str | None:
    """Why this import breaks the layout, or None."""
    source, target = layer(imp.importer), layer(imp.target)
    top_name = imp.target.split(".")[0]
    if top_name in NEVER_FROM_EXPORTER:
        return f"exporter/ must not import {top_name}"
    if target == "external":
        if source == CORE and top_name in IO_LIBRARIES:
            return f"the pure core imports the I/O library {top_name}"
        return None
    if source == "top":
        return None
    if source == "shared":
        return None if target == "shared" else "a shared module imports beyond the shared modules"
    if target in ("shared", CORE, source):
        return None
    who = "the pure core" if source == CORE else source
    return f"{who} imports {target}" if target in PACKAGES else f"{who} imports the top-level {imp.target}"


def violations() -> list[tuple[Import, str]]:
    found = []
    for imp in all_imports():
        reason = problem(imp)
        if reason is not None:
            found.append((imp, reason))
    return found


def describe(found: list[tuple[Import, str]]) -> str:
    return "\n".join(f"  {imp.importer} (line {imp.line}) imports {imp.target}: {reason}" for imp, reason in found)


def unexpected(found: list[tuple[Import, str]]) -> list[tuple[Import, str]]:
    return [(imp, reason) for imp, reason in found if (imp.importer, imp.target) not in ALLOWED_FOR_NOW]


# -- the rules --------------------------------------------------------------------------------


def test_every_module_under_exporter_is_checked():
    modules = our_modules()
    assert {"exporter", "exporter.app", "exporter.config", "exporter.snapshot.model", "exporter.chain.reader",
            "exporter.history.store", "exporter.serving.server"} <= set(modules)
    assert all(layer(name) != "external" for name in modules)
    assert any(imp.target == "exporter.snapshot.model" for imp in all_imports()), "imports are found"


def test_the_pure_core_imports_only_itself_the_shared_modules_and_no_io():
    found = [(imp, reason) for imp, reason in unexpected(violations()) if layer(imp.importer) == CORE]
    assert not found, "the core (exporter.snapshot) must stay pure:\n" + describe(found)


def test_packages_import_the_core_the_shared_modules_and_themselves_only():
    found = [(imp, reason) for imp, reason in unexpected(violations()) if layer(imp.importer) in PACKAGES[1:]]
    assert not found, "only top-level modules wire packages together:\n" + describe(found)


def test_shared_modules_import_only_each_other():
    found = [(imp, reason) for imp, reason in unexpected(violations()) if layer(imp.importer) == "shared"]
    assert not found, "config, ss58 and the package root are imported by everything:\n" + describe(found)


def test_exporter_never_imports_the_simulated_node_or_the_tests():
    found = [(imp, reason) for imp, reason in violations() if imp.target.split(".")[0] in NEVER_FROM_EXPORTER]
    assert not found, describe(found)


def test_the_allowlist_lists_only_current_violations():
    current = {(imp.importer, imp.target) for imp, _ in violations()}
    stale = sorted(ALLOWED_FOR_NOW - current)
    assert not stale, f"these imports are gone: delete them from ALLOWED_FOR_NOW: {stale}"


# -- module sizes --------------------------------------------------------------------------------

MAX_MODULE_LINES = 400
# Past the bound today and waiting to be split; delete an entry once its module is back within
# it: test_the_long_module_list_lists_only_long_modules says when. Empty now: config.py and
# chain/reader.py are split (config_load.py, chain/stages.py).
LONG_FOR_NOW: frozenset[str] = frozenset()


def lines_of(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_every_module_stays_within_the_line_bound():
    long = {name: lines_of(path) for name, path in our_modules().items() if lines_of(path) > MAX_MODULE_LINES}
    found = {name: lines for name, lines in long.items() if name not in LONG_FOR_NOW}
    assert not found, f"past {MAX_MODULE_LINES} lines, a second job has grown inside; split it out: {found}"


def test_the_long_module_list_lists_only_long_modules():
    modules = our_modules()
    stale = sorted(name for name in LONG_FOR_NOW if name not in modules or lines_of(modules[name]) <= MAX_MODULE_LINES)
    assert not stale, f"these are within {MAX_MODULE_LINES} lines now: delete them from LONG_FOR_NOW: {stale}"


# -- the checker itself ------------------------------------------------------------------------


def _problems(importer: str, source: str) -> list[str]:
    found = []
    for imp in imports_in(importer, source, set(our_modules())):
        reason = problem(imp)
        if reason:
            found.append(f"{imp.target}: {reason}")
    return found


def test_the_checker_resolves_relative_lazy_and_dynamic_imports():
    source = """
from . import model
from .stake_math import inherited_stake
from ..chain import reader
from ..serving.status import Status
import sqlite3
if TYPE_CHECKING:
    from exporter.history.writer import HistoryWriter

def later():
    import exporter.history.store
    importlib.import_module("exporter.refresh")
"""
    assert sorted(_problems("exporter.snapshot.builder", source)) == sorted([
        "exporter.chain.reader: the pure core imports chain",
        "exporter.serving.status: the pure core imports serving",
        "sqlite3: the pure core imports the I/O library sqlite3",
        "exporter.history.writer: the pure core imports history",
        "exporter.history.store: the pure core imports history",
        "exporter.refresh: the pure core imports the top-level exporter.refresh",
    ])


def test_the_checker_allows_what_the_layout_allows():
    assert _problems("exporter.chain.reader", "from exporter.snapshot.model import ChainRead\nimport asyncio") == []
    assert _problems("exporter.history.writer", "from exporter.config import HistoryConfig\nfrom . import store") == []
    assert _problems("exporter.serving.server", "from exporter import __version__") == []
    assert _problems("exporter.refresh", "from exporter.serving.status import Status") == []
    assert _problems("exporter.history.writer", "from exporter.serving.status import Status") == [
        "exporter.serving.status: history imports serving"
    ]
    assert _problems("exporter.chain.session", "from exporter.logs import configure_logging") == [
        "exporter.logs: chain imports the top-level exporter.logs"
    ]
    assert _problems("exporter.app", "from simnode import ChainState") == ["simnode: exporter/ must not import simnode"]
    assert _problems("exporter.config", "from exporter.snapshot.model import ChainRead") == [
        "exporter.snapshot.model: a shared module imports beyond the shared modules"
    ]
