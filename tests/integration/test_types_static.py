"""Edit time: pyright and mypy flag exactly the lines of ``tests/types`` marked ``# expect-error``.

The files in ``tests/types`` are users' code, type-checked and never run. A line with a mistake
ends in ``# type: ignore  # expect-error``: the ``type: ignore`` keeps the project's own
``pyright`` and ``mypy`` runs clean. This test copies the files without their ignore comments,
runs both checkers on the copies (with the project's settings, in parallel) and asserts that
each one reports errors on the marked lines and on no other line: every mistake is caught,
and correct code (``assert_type`` included) is not flagged.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TYPES = ROOT / "tests" / "types"
IGNORE = re.compile(r"#\s*(type|pyright):\s*ignore(\[[^\]]*\])?\s*")
MARK = "# expect-error"

pytest.importorskip("mypy")


def _copies(tmp: Path) -> tuple[list[Path], set[tuple[str, int]]]:
    """The files without ignore comments, and the (file, line) pairs marked ``# expect-error``."""
    files, marked = [], set()
    for src in sorted(TYPES.glob("*.py")):
        lines = src.read_text().splitlines()
        marked |= {
            (src.name, n) for n, line in enumerate(lines, start=1) if line.rstrip().endswith(MARK)
        }
        dst = tmp / src.name
        dst.write_text("\n".join(IGNORE.sub("", line).rstrip() for line in lines) + "\n")
        files.append(dst)
    return files, marked


def _pyright_command() -> list[str]:
    exe = shutil.which("pyright")
    if exe is None:
        pytest.skip("pyright is not installed")
    return [exe, "--outputjson"]


def _flagged_by_pyright(output: str, tmp: Path) -> dict[tuple[str, int], list[str]]:
    report = json.loads(output)
    flagged: dict[tuple[str, int], list[str]] = {}
    for d in report["generalDiagnostics"]:
        if d["severity"] != "error":
            continue
        where = Path(d["file"])
        key = (where.name if where.parent == tmp else str(where), d["range"]["start"]["line"] + 1)
        flagged.setdefault(key, []).append(d["message"].splitlines()[0])
    return flagged


def _flagged_by_mypy(output: str, tmp: Path) -> dict[tuple[str, int], list[str]]:
    flagged: dict[tuple[str, int], list[str]] = {}
    for line in output.splitlines():
        m = re.match(r"(.+?):(\d+): error: (.*)", line)
        if m:
            where = Path(m.group(1))
            name = where.name if where.resolve().parent == tmp.resolve() else m.group(1)
            flagged.setdefault((name, int(m.group(2))), []).append(m.group(3))
    return flagged


def _compare(
    checker: str, flagged: dict[tuple[str, int], list[str]], marked: set[tuple[str, int]]
) -> list[str]:
    problems = [
        f"{checker} did not flag {f}:{n}, marked {MARK}" for f, n in sorted(marked - set(flagged))
    ]
    problems += [
        f"{checker} flagged {f}:{n}, not marked: {msgs[0]}"
        for (f, n), msgs in sorted(flagged.items())
        if (f, n) not in marked
    ]
    return problems


def test_pyright_and_mypy_flag_exactly_the_marked_lines(tmp_path: Path) -> None:
    files, marked = _copies(tmp_path)
    assert len(marked) >= 40, "the mistakes file lost its marks"
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    pyright = subprocess.Popen(
        [*_pyright_command(), *map(str, files)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    mypy = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-error-summary",
            "--hide-error-context",
            *map(str, files),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pyright_out, pyright_err = pyright.communicate(timeout=600)
    mypy_out, mypy_err = mypy.communicate(timeout=600)
    assert pyright_out.strip().startswith("{"), f"pyright did not report: {pyright_err[-2000:]}"
    assert mypy.returncode in (0, 1), f"mypy crashed: {mypy_err[-2000:]}{mypy_out[-2000:]}"
    problems = _compare("pyright", _flagged_by_pyright(pyright_out, tmp_path), marked)
    problems += _compare("mypy", _flagged_by_mypy(mypy_out, tmp_path), marked)
    assert not problems, "\n".join(problems)
