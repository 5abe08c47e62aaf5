"""The import layers hold (pyproject's [tool.importlinter], also run by ``make lint``), and no
module imports another module's private name."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "countenance"


def test_the_layers_contract_is_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint)], cwd=SRC.parents[1], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_no_module_imports_a_private_name_of_another() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private or any(p.startswith("_") for p in (node.module or "").split(".")):
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {node.module}")
    assert offenders == []


def test_no_import_cycles_in_the_package() -> None:
    """No module reaches itself through its imports (run-time ones: imports made only for
    type checking name a type, they do not run)."""
    import grimp

    graph = grimp.build_graph("countenance", exclude_type_checking_imports=True)
    cycles = sorted(
        {
            tuple(sorted((a, b)))
            for a in graph.modules
            for b in graph.find_modules_directly_imported_by(a)
            if graph.find_shortest_chain(importer=b, imported=a)
        }
    )
    assert cycles == []


# The catalog is the only holder of the database (ARCHITECTURE.md, Boundaries): outside
# catalog/, nothing reaches a catalog's engine (an attribute ``db`` or ``_db``) or imports
# SQLAlchemy, so every SQL statement is one of the catalog's methods. The write core alone
# names SQLAlchemy, for the type of the transaction it hands out and the error it translates.
SQL_ALLOWED = {"core.py"}


def database_escapes(source: str, *, sql_allowed: bool = False) -> list[str]:
    """Where ``source`` reaches a database past the catalog: ``LINE .db`` for an attribute
    named ``db``/``_db``, ``LINE sqlalchemy`` for an import of it."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in {"db", "_db"}:
            found.append(f"{node.lineno} .{node.attr}")
        if sql_allowed:
            continue
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        found += [f"{node.lineno} {m}" for m in modules if m.split(".")[0] == "sqlalchemy"]
    return found


def test_no_module_outside_the_catalog_reaches_its_database() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC)
        if name.parts[0] == "catalog":
            continue
        escapes = database_escapes(path.read_text(), sql_allowed=str(name) in SQL_ALLOWED)
        offenders += [f"{name}:{e}" for e in escapes]
    assert offenders == []


def test_the_scan_sees_an_escape() -> None:
    leaked = (
        "import sqlalchemy as sa\n"
        "from sqlalchemy import select\n"
        "def f(engine):\n"
        "    with engine.catalog.db.connect() as conn:\n"
        "        return conn, engine.catalog._db\n"
    )
    assert sorted(database_escapes(leaked)) == ["1 sqlalchemy", "2 sqlalchemy", "4 .db", "5 ._db"]
    assert sorted(database_escapes(leaked, sql_allowed=True)) == ["4 .db", "5 ._db"]
    assert database_escapes("catalog.transaction()\nKeyStore = catalog.key_store()\n") == []
