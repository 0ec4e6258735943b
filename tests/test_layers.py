"""The package layering (pyproject.toml's import-linter contracts) holds, and can fail.

The second test copies the packages, adds one upward import and expects the
contract to break: a contract that cannot fail would prove nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = shutil.which("lint-imports")

pytestmark = pytest.mark.skipif(LINT is None, reason="import-linter is in the dev extra")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(root))
    assert LINT is not None
    return subprocess.run([LINT, "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_layers_kept() -> None:
    res = _lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


@pytest.mark.parametrize(("module", "line"), [
    ("golden_model/ir.py", "import cimgen.config  # noqa"),
    ("cimgen/compiler/tiling.py", "import cimgen.hw.rtl_sim  # noqa"),
    ("cimgen/frontend/fold.py", "from cimgen.compiler import layout  # noqa"),
    ("cimgen/basis/fit.py", "from cimgen.compiler import mappings  # noqa"),
    ("cimgen/frontend/datasets.py", "import cimgen.basis.io  # noqa"),
])
def test_upward_import_breaks_the_contract(tmp_path: Path, module: str, line: str) -> None:
    for name in ("golden_model", "cimgen"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + "\n" + line + "\n")
    res = _lint(tmp_path)
    assert res.returncode != 0, f"{module}: '{line}' was not caught\n{res.stdout}"
    assert "BROKEN" in res.stdout or "broken" in res.stdout
    print(sys.version_info[:2], module, "caught")
