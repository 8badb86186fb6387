"""The README's client sections are executable: run them against the real proxy.

Each ```python block under "Using it from clients" runs with the proxy's URL
in place of the documented http://127.0.0.1:8282; the ```toml block must be
exactly the config the Codex tests run with.
"""
from __future__ import annotations

import ast
import asyncio
import re

import pytest

from proxy.devtools import ROOT
from tests.clients.codex_harness import codex_config_toml

DOC_URL = "http://127.0.0.1:8282/v1"


def _section_blocks(lang: str) -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Using it from clients", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def test_codex_config_in_readme_is_the_tested_one():
    (toml,) = _section_blocks("toml")
    assert toml == codex_config_toml(DOC_URL)


@pytest.mark.parametrize("index", [0, 1], ids=["agents_sdk", "openai_sdk"])
def test_python_snippet_runs_as_written(index, proxy, mock, capsys):
    code = _section_blocks("python")[index].replace(DOC_URL, proxy.url + "/v1")
    compiled = compile(code, f"README python block {index}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict = {"__name__": "readme_snippet"}
    result = eval(compiled, namespace)
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    out = capsys.readouterr().out
    if index == 0:
        # mock-tool calls the first tool offered, then answers with the tool's output.
        assert "Tool result:" in out and "21 C, sunny" in out
        calls = [m for r in mock.requests("mock-tool") for m in r["body"]["messages"] if m["role"] == "tool"]
        assert calls and "21 C, sunny" in str(calls[-1]["content"])
    else:
        assert out.count("You said: Hello again!") == 1
        assert "You said: Hello!" in out
