"""The import rules that `make lint` checks (import-linter, `[tool.importlinter]` in pyproject.toml): services
never import each other, nothing but ondasctl imports ondasctl, the ondas library imports no service.

The real contracts run against the repository (it keeps them) and against small package trees written to
tmp_path with the platform's package names, each breaking one rule (the linter must say which and where).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# A tree with every root package of the contracts and nothing wrong in it: each service imports the library,
# the agents import agents.core, ondasctl imports what it starts.
CLEAN_TREE = {
    "ondas/__init__.py": "",
    "ondas/errors.py": "class Invalid(Exception): ...\n",
    "ondas/ca.py": "from ondas.errors import Invalid\n",
    "ondas/kafka.py": "from ondas import errors\n",
    "ondasctl/__init__.py": "",
    "ondasctl/pki.py": "from ondas.ca import Invalid\n",
    "ondasctl/platform.py": "import auth.app\nimport agents.mqtt.app\nfrom ondasctl import pki\n",
    "auth/__init__.py": "",
    "auth/models.py": "from ondas import errors\n",
    "auth/app.py": "from auth import models\n",
    "device_manager/__init__.py": "",
    "device_manager/service.py": "from ondas import kafka\n",
    "history/__init__.py": "",
    "history/service.py": "from ondas import errors\n",
    "persister/__init__.py": "",
    "persister/store_mongo.py": "from ondas import errors\n",
    "agents/__init__.py": "",
    "agents/core/__init__.py": "",
    "agents/core/payload.py": "from ondas import errors\n",
    "agents/mqtt/__init__.py": "",
    "agents/mqtt/app.py": "from agents.core import payload\nfrom agents.mqtt import revocation\n",
    "agents/mqtt/revocation.py": "from ondas.ca import Invalid\n",
    "agents/http/__init__.py": "",
    "agents/http/service.py": "from agents.core import payload\n",
    "x509_mgmt/__init__.py": "",
    "x509_mgmt/service.py": "from ondas import kafka\n",
}


def linter_config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return config


def contract_names() -> dict[str, str]:
    return {c["id"]: c["name"] for c in linter_config()["contracts"]}


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """The linter as `make lint` runs it, with the repository's contracts, on the packages found in ``cwd``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--config", str(PYPROJECT)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """The files, and an empty package for every root package of the contracts that they leave out (a service
    added to the contracts later)."""
    for package in linter_config()["root_packages"]:
        files = {f"{package}/__init__.py": "", **files}
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def broken(output: str) -> set[str]:
    """The ids of the contracts the linter reports broken."""
    names = contract_names()
    flat = " ".join(output.split())  # the linter wraps long contract names
    return {cid for cid, name in names.items() if re.search(re.escape(" ".join(name.split())) + r" BROKEN", flat)}


def test_make_lint_runs_the_import_rules():
    recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe is not None, "the Makefile has no lint target"
    assert "lint-imports" in recipe.group(1)


def test_the_repository_keeps_its_import_rules():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contract_names())} kept, 0 broken." in result.stdout


def test_the_clean_fixture_tree_passes(tmp_path):
    result = lint_imports(write_tree(tmp_path, CLEAN_TREE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert broken(result.stdout) == set()


@pytest.mark.parametrize(
    ("module", "source", "contracts", "reported"),
    [
        ("device_manager/tenants.py", "from auth import models\n", {"services-independent"}, "auth.models"),
        ("persister/consumers.py", "import history.service\n", {"services-independent"}, "history.service"),
        ("history/ingest.py", "from agents.core import payload\n", {"services-independent"}, "agents.core.payload"),
        (
            "agents/mqtt/devices.py",
            "from device_manager import service\n",
            {"services-independent"},
            "device_manager.service",
        ),
        ("agents/http/bridge.py", "from agents.mqtt import app\n", {"agents-independent"}, "agents.mqtt.app"),
        ("agents/core/delivery.py", "import agents.http.service\n", {"agents-independent"}, "agents.http.service"),
        ("agents/mqtt/certs.py", "from ondasctl.pki import Invalid\n", {"ondasctl-private"}, "ondasctl.pki"),
        ("auth/keys.py", "from ondasctl import pki\n", {"ondasctl-private"}, "ondasctl.pki"),
        ("x509_mgmt/devices.py", "import device_manager.service\n", {"services-independent"}, "device_manager.service"),
        ("ondas/store.py", "from persister import store_mongo\n", {"ondas-library"}, "persister.store_mongo"),
        ("ondas/paths.py", "import ondasctl.pki\n", {"ondas-library", "ondasctl-private"}, "ondasctl.pki"),
    ],
    ids=[
        "service-imports-service",
        "service-imports-service-plainly",
        "data-service-imports-agents-core",
        "agent-imports-a-data-service",
        "agent-imports-agent",
        "agents-core-imports-an-agent",
        "agent-imports-ondasctl",
        "service-imports-ondasctl",
        "x509-mgmt-imports-a-service",
        "library-imports-a-service",
        "library-imports-ondasctl",
    ],
)
def test_a_forbidden_import_fails_the_lint(tmp_path, module, source, contracts, reported):
    result = lint_imports(write_tree(tmp_path, {**CLEAN_TREE, module: source}))
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken(result.stdout) == contracts, result.stdout
    importer = module.removesuffix(".py").replace("/", ".")
    assert re.search(rf"{re.escape(importer)} -> {re.escape(reported)}\b", result.stdout), result.stdout


def test_both_violations_of_one_tree_are_reported(tmp_path):
    """A service importing another service and one importing ondasctl: the lint names both."""
    tree = {
        **CLEAN_TREE,
        "device_manager/tenants.py": "from auth import models\n",
        "agents/mqtt/revocation.py": "from ondasctl.pki import Invalid\n",
    }
    result = lint_imports(write_tree(tmp_path, tree))
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken(result.stdout) == {"services-independent", "ondasctl-private"}, result.stdout
    assert "device_manager.tenants -> auth.models" in result.stdout
    assert "agents.mqtt.revocation -> ondasctl.pki" in result.stdout
