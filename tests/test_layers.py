"""The dependency layers hold (README tour, ``[tool.importlinter]``), and ``make lint`` would catch a break.

Each case runs ``lint-imports`` on a copy of ``src/`` with one import added, so it proves the check fails on
exactly the kinds of change it exists to stop: an import up the layers, a cycle between siblings and a
package ``__init__`` importing its modules late while they import it. Parsing a study config stays light:
``ltmia.study.config`` imports no torch, so ``ltmia study plan`` answers quickly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="lint-imports is in the dev extra (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` in ``tree`` (its pyproject.toml, tools/ and src/), as ``make lint`` runs it."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of what lint-imports reads: pyproject.toml, tools/ and the package sources."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "tools", tmp_path / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "src" / "ltmia", tmp_path / "src" / "ltmia", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def append(tree: Path, module: str, code: str) -> None:
    path = tree / "src" / "ltmia" / module
    path.write_text(path.read_text() + "\n\n" + code + "\n")


def test_the_code_keeps_every_contract(tree):
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "code", "broken"),
    [
        # a layer below importing a recipe above it, late (inside a function) so Python would not notice
        ("store.py", "def _up():\n    from ltmia.classifier import LTMIA", "layers point one way"),
        # two siblings of one package importing each other
        ("audit/html.py", "def _back():\n    from ltmia.audit.run import audit", "no import cycles between"),
        # the old registration pattern: a package __init__ imports a module that imports the package
        ("attacks/zlib.py", "from ltmia.attacks import ATTACKS as _registry", "no import cycle between any"),
    ],
)
def test_a_new_violation_fails_lint(tree, module, code, broken):
    append(tree, module, code)
    result = lint_imports(tree)
    assert result.returncode != 0
    broken_section = result.stdout.split("Broken contracts", 1)[-1]
    assert broken in broken_section, result.stdout


def test_study_config_parses_without_torch():
    code = (
        "import sys\n"
        "import ltmia.study.config as config\n"
        "assert 'torch' not in sys.modules, 'importing ltmia.study.config loaded torch'\n"
        "raw = config.read_toml('demo')\n"
        "assert raw['name'] == 'demo' and raw['combos']\n"
        "assert 'torch' not in sys.modules, 'reading a study config loaded torch'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
