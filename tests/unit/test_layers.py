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
