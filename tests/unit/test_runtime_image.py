"""The runtime image holds the service only: the mock backend, the demo and the dev
tools are excluded by ``.dockerignore``, so no module the service runs may import them."""
from __future__ import annotations

import ast
from pathlib import Path

from proxy.devtools import ROOT

DEV_ONLY = ("proxy/mock", "proxy/devtools.py", "proxy/demo.py")


def _runtime_modules() -> list[Path]:
    return [
        p for p in sorted((ROOT / "proxy").rglob("*.py"))
        if not any(str(p.relative_to(ROOT)).startswith(dev) for dev in DEV_ONLY)
    ]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def test_the_service_never_imports_dev_tools():
    modules = _runtime_modules()
    assert len(modules) > 40, "the runtime modules were not found"
    offenders = {
        str(p.relative_to(ROOT)): sorted(n for n in _imports(p) if n.startswith(("proxy.mock", "proxy.devtools", "proxy.demo")))
        for p in modules
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_dockerignore_leaves_the_dev_tools_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert set(DEV_ONLY) <= ignored, ignored
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY proxy/ proxy/" in dockerfile and "COPY tests" not in dockerfile
