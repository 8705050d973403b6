"""The ondas-pdp Kong plugin's own Lua specs (gateway/kong-plugin/spec), run with busted on Lua 5.1."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PLUGIN = Path(__file__).resolve().parents[3] / "gateway" / "kong-plugin"


def run_busted(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    busted = shutil.which("busted")
    assert busted, "busted is missing: run make install (Debian lua5.1, lua-busted, lua-cjson, lua-socket)"
    return subprocess.run(
        [busted, "--output=TAP", *args], cwd=PLUGIN, capture_output=True, text=True, timeout=120, env=env
    )


def test_the_plugins_lua_specs_pass():
    out = run_busted()
    assert out.returncode == 0, out.stdout + out.stderr
    passed = [line for line in out.stdout.splitlines() if line.startswith("ok ")]
    assert len(passed) >= 16, out.stdout
    assert "not ok" not in out.stdout
