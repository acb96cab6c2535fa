"""The README tells the truth: each python block runs as written, on its own, in a fresh
Python process whose working directory is an empty temporary folder (as a reader of a fresh
clone runs it, with no test-suite hooks), and prints exactly what the page shows after it.

Marks (HTML comments, see ``test_docs.py``): ``<!-- skip: reason -->``, ``<!-- raises:
shapesafe.ShapeError -->`` (the block must raise it; ``Name: message`` is then what it
printed) and ``<!-- output -->`` before the fenced block of what it printed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_docs import ROOT, Block, blocks

README_BLOCKS = blocks(ROOT / "README.md")

# Runs one block as ``__main__``; for a ``raises`` block prints ``name: message`` of what it
# raised, and fails if it raised something else or nothing.
_DRIVER = """
import importlib, json, sys
source, where, raises = json.loads(sys.argv[1])
try:
    exec(compile(source, where, "exec"), {"__name__": "__main__"})
except Exception as error:
    if not raises:
        raise
    module, _, name = raises.rpartition(".")
    if not isinstance(error, getattr(importlib.import_module(module), name)):
        raise
    print(f"{raises}: {error}")
else:
    if raises:
        sys.exit(f"{where}: expected {raises}, nothing was raised")
"""


def test_the_readme_has_python_blocks() -> None:
    assert len(README_BLOCKS) >= 2 and any(b.output for b in README_BLOCKS)


@pytest.mark.parametrize("block", README_BLOCKS, ids=[f"line{b.line}" for b in README_BLOCKS])
def test_readme_block_runs_on_its_own_in_a_fresh_process(block: Block, tmp_path: Path) -> None:
    if block.skip:
        pytest.skip(block.skip)
    where = f"README.md:{block.line}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),  # this checkout's shapesafe, as `pip install -e .` gives it
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "MPLBACKEND": "Agg",
    }
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps([block.source, where, block.raises])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-3000:]}"
    if block.output is not None:
        got = [line.rstrip() for line in done.stdout.rstrip("\n").splitlines()]
        want = [line.rstrip() for line in block.output.rstrip("\n").splitlines()]
        assert got == want, f"{where}: printed\n" + "\n".join(got)
    # what the block wrote stays in its folder; in a checkout .gitignore covers it
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "cache" not in p.parts]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        input="\n".join(str(p.relative_to(tmp_path)) for p in written),
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert sorted(ignored) == sorted(str(p.relative_to(tmp_path)) for p in written), (
        f"{where} writes files that .gitignore does not cover: "
        f"{sorted(set(str(p.relative_to(tmp_path)) for p in written) - set(ignored))}"
    )


def test_the_demo_writes_only_where_gitignore_covers_or_outside_the_checkout() -> None:
    """``shapesafe demo`` run from a checkout: its outputs (``--out``, default
    ``./shapesafe-demo``) are ignored by git, and its photos are cached outside the checkout."""
    import argparse

    from models import demo

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    out = Path(parser.parse_args([]).out)
    assert not out.is_absolute()
    files = [out / "best_model" / "manifest.json", out / "CNN.png", out / "CNN.jsonl"]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert ignored == [str(f) for f in files]
    cache = demo._cache_dir().resolve()
    assert ROOT not in cache.parents
