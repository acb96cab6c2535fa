"""The wheel: the library and its zoo as ``shapesafe.models``, no top-level ``models``."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_installs_no_top_level_models(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("shapesafe-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"shapesafe", wheel.name.split("-py3")[0] + ".dist-info"}
    assert (
        "shapesafe/models/logo.py" in names
        and "shapesafe/models/weights/resnet_small_shapes/weights.safetensors" in names
    )
    assert "shapesafe/py.typed" in names
