"""Probe a logo style (``models/logo.py``) cheaply: is there a colour shortcut, and how do a
pixel-position-bound model and the talk's networks do on it?

Prints one JSON object: a random forest on ``logo.colour_statistics`` (5-fold
cross-validated accuracy), scikit-learn's logistic regression on the flattened pixels (a fast
surrogate of the MLP's position-sensitivity), and, with ``--models``, the demo's own recipe
(``shapesafe demo``: 800 / 200 split, flips and shifts, SGD with momentum and cosine decay)
for the named networks. Styles are named (``--style``) and altered with ``--set``:

    python benchmarks/logo_styles.py --style conference --set jitter=0.06 --models mlp64,cnn

Every run goes in a fresh folder under ``--work``; nothing is downloaded.
"""

import argparse
import ast
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import environment

from shapesafe.models import demo, logo


def _style(name: str, changes: list[str]) -> logo.Style:
    style = logo.STYLES[name]
    values = {}
    for change in changes:
        key, _, value = change.partition("=")
        values[key] = ast.literal_eval(value)
    return dataclasses.replace(style, **values)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--style", default=demo.STYLE)
    parser.add_argument("--set", action="append", default=[], help="FIELD=python literal")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photo-size", type=int, default=128, help="generated size")
    parser.add_argument("--size", type=int, default=64, help="what the networks see")
    parser.add_argument("--models", default="", help="demo models to train, e.g. mlp64,cnn")
    parser.add_argument("--epochs", type=int, default=demo.DEFAULT_EPOCHS)
    parser.add_argument("--work", default=None)
    args = parser.parse_args(argv)

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score, train_test_split

    from shapesafe.data import image_folder

    style = _style(args.style, args.set)
    work = Path(args.work or tempfile.mkdtemp(prefix="logo-style-"))
    t0 = time.perf_counter()
    root = logo.generate(
        work / "photos", n=args.n, seed=args.seed, size=args.photo_size, style=style
    )
    made = time.perf_counter() - t0
    ds = image_folder(root, size=(args.size, args.size))
    images = np.stack([e["image"] for e in ds])
    labels = np.array([int(e["label"]) for e in ds])
    stats = np.stack([logo.colour_statistics(im) for im in images])
    forest = cross_val_score(
        RandomForestClassifier(200, random_state=0, n_jobs=1), stats, labels, cv=5
    )
    small = np.stack(
        [np.asarray(image_folder_resize(im, 32), np.float32).ravel() / 255 for im in images]
    )
    xtr, xte, ytr, yte = train_test_split(
        small, labels, test_size=0.2, stratify=labels, random_state=args.seed
    )
    linear = LogisticRegression(C=0.01, max_iter=300).fit(xtr, ytr).score(xte, yte)
    out = {
        "benchmark": "logo_styles",
        **environment(),
        "style": dataclasses.asdict(style),
        "n": args.n,
        "seed": args.seed,
        "photo_size": args.photo_size,
        "size": args.size,
        "generate_s": round(made, 1),
        "colour_forest_cv": round(float(forest.mean()), 3),
        "colour_forest_cv_folds": [round(float(f), 3) for f in forest],
        "pixels_logistic_32px": round(float(linear), 3),
    }
    if args.models:
        logo.STYLES["_probe"] = style
        ns = argparse.Namespace(
            quick=False,
            transfer=False,
            n=args.n,
            size=args.size,
            epochs=args.epochs,
            seed=args.seed,
            batch=32,
            lr=None,
            models=args.models,
            data=str(work / "demo"),
            out=str(work / "out"),
            quiet=True,
            style="_probe",
        )
        _, measured = demo.measure(ns)
        out["demo"] = [
            {
                k: (round(v, 3) if isinstance(v, float) else v)
                for k, v in r.items()
                if k != "blueprint"
            }
            for r in measured
        ]
    print(json.dumps(out))  # one line, so that a log of many probes is one JSON per line
    return out


def image_folder_resize(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


if __name__ == "__main__":
    main(sys.argv[1:])
