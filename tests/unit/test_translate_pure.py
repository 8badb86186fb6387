"""The translation core is pure: it imports nothing of the service around it.

``proxy/translate/`` may import the standard library, orjson, and itself —
never the HTTP edge (``proxy.errors``, ``proxy.app``, resources, settings…),
so stored responses, background replays or a WebSocket transport can use it
as it is. Read from the source, so an import hidden in a function counts too.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import proxy.translate

CORE = Path(proxy.translate.__file__).parent
THIRD_PARTY = {"orjson"}


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in ``path``."""
    package = ".".join(("proxy", *path.relative_to(CORE.parent).with_suffix("").parts[:-1]))
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.append((f"{base}.{node.module}" if node.module else base, node.lineno))
            else:
                found.append((node.module or "", node.lineno))
    return found


def test_core_imports_only_itself_the_stdlib_and_orjson() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 15
    bad = []
    for path in files:
        for name, line in _imports(path):
            top = name.split(".")[0]
            if name == "proxy.translate" or name.startswith("proxy.translate."):
                continue
            if top in THIRD_PARTY or top in sys.stdlib_module_names or top == "__future__":
                continue
            bad.append(f"{path.relative_to(CORE.parent.parent)}:{line} imports {name}")
    assert not bad, bad
