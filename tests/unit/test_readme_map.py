"""The README's newcomer's map ("How a request flows") names every module of ``proxy/``, and only
modules that exist: a file added, moved or removed without the map following fails here."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_NAME = re.compile(r"(?<![\w./])((?:proxy/)?(?:[\w]+/)*[\w]+\.py)\b")


def _map_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## How a request flows")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def _modules() -> list[Path]:
    """Every module of the service (the mock backend is a test double with a map of its own)."""
    proxy = ROOT / "proxy"
    return sorted(
        p.relative_to(ROOT) for p in proxy.rglob("*.py")
        if p.name != "__init__.py" and "mock" not in p.relative_to(proxy).parts
    )


def _named(section: str) -> set[str]:
    return set(_NAME.findall(section))


def _is_named(module: Path, named: set[str], section: str) -> bool:
    if module.as_posix() in named:
        return True
    # Inside a folder the map names once (``proxy/translate/stream/``, ``proxy/store/``…),
    # a module may go by its file name.
    folder = module.parent.as_posix() + "/"
    return module.name in named and folder in section


def test_every_module_is_on_the_map() -> None:
    section = _map_section()
    named = _named(section)
    missing = [m.as_posix() for m in _modules() if not _is_named(m, named, section)]
    assert not missing, f"modules the README's map does not name: {missing}"


def test_the_map_names_no_module_that_does_not_exist() -> None:
    names = {m.name for m in _modules()} | {m.as_posix() for m in _modules()}
    stale = sorted(n for n in _named(_map_section()) if n not in names and not (ROOT / n).exists())
    assert not stale, f"the README's map names files that do not exist: {stale}"


def test_the_checks_can_fail() -> None:
    """A map without one module's line is caught, and so is a made-up module."""
    section = _map_section()
    gone = section.replace("proxy/exchange.py", "")
    assert not _is_named(Path("proxy/exchange.py"), _named(gone), gone)
    assert "proxy/nowhere.py" in _named(section + " proxy/nowhere.py ")
