"""The layering contract in pyproject.toml holds, and it fails on an upward import."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = shutil.which("lint-imports")

pytestmark = pytest.mark.skipif(
    LINT is None, reason="import-linter is not installed (the dev extra)"
)


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    assert LINT is not None
    return subprocess.run(
        [LINT, "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def test_the_library_keeps_its_layers() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "Contracts: 1 kept, 0 broken." in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "models", tmp_path / "models")
    shutil.copytree(
        ROOT / "shapesafe",
        tmp_path / "shapesafe",
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    spec = tmp_path / "shapesafe" / "_specs" / "_format.py"
    spec.write_text(spec.read_text() + "\nfrom .._training import _fit  # an upward import\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "shapesafe._specs is not allowed to import shapesafe._training" in done.stdout
