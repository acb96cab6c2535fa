"""Every notebook in notebooks/ runs top to bottom without a cell error (nbclient, kernel python3).

The kernel runs with ``SHAPESAFE_NOTEBOOK_QUICK=1``: a notebook that trains on the logo task reads
it and uses a small setting (fewer photos, pixels, epochs), so CI stays fast; the committed
outputs come from a full run (``python notebooks/make_notebooks.py``).
"""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_found() -> None:
    assert {
        "01_logo_classifier.ipynb",
        "02_shape_errors.ipynb",
        "04_sequences.ipynb",
        "06_digits_walkthrough.ipynb",
    } <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_without_errors(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHAPESAFE_NOTEBOOK_QUICK", "1")  # the kernel inherits it
    monkeypatch.setenv(
        "XDG_CACHE_HOME", str(tmp_path / "cache")
    )  # generated photos stay in the test's folder
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
