"""The shipped systemd unit, rendered for this checkout, read the way systemd reads it.

The unit names its install prefix, ``/opt/responses-proxy``; the copy the tests
use has that prefix, and nothing else, replaced by this checkout's path.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from proxy.devtools import ROOT

UNIT = ROOT / "conf" / "responses-proxy.service"
PREFIX = "/opt/responses-proxy"

_TIME = re.compile(r"^(\d+)(s|min)?$")


def render(prefix: Path = ROOT) -> str:
    text = UNIT.read_text()
    rendered = text.replace(PREFIX, str(prefix))
    assert rendered.replace(str(prefix), PREFIX) == text, "the prefix must be the only difference"
    return rendered


def service_section(text: str) -> dict[str, list[str]]:
    """``[Service]`` as key -> values in order (keys such as Environment= repeat)."""
    out: dict[str, list[str]] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def environment(service: dict[str, list[str]]) -> dict[str, str]:
    """The ``Environment=`` assignments (each line may hold several, shell-quoted)."""
    env = {}
    for line in service.get("Environment", []):
        for assignment in shlex.split(line):
            name, _, value = assignment.partition("=")
            env[name] = value
    return env


def seconds(value: str) -> int:
    m = _TIME.match(value)
    assert m, f"unsupported time span {value!r}"
    return int(m[1]) * (60 if m[2] == "min" else 1)


def read_env_file(path: Path) -> dict[str, str]:
    """``EnvironmentFile=`` syntax: KEY=VALUE lines, # comments."""
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip().strip("'\"")
    return env
