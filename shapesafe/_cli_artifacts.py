"""The artifact commands of the ``shapesafe`` command line: ``predict`` and ``info``.

``shapesafe predict ARTIFACT FILE...`` prints a label and a confidence per file (``--json``:
one JSON list); a file that cannot be read is reported on stderr and the others are still
predicted (exit status 1). ``shapesafe info ARTIFACT`` prints the specs, class names,
preprocessing, metrics, versions and file hashes of a verified artifact. An artifact that
fails verification exits with status 2 and the reason.
"""

import argparse
import dataclasses
import json
import sys
from typing import Any


def add_artifact_commands(sub: Any) -> None:
    """Add ``predict`` and ``info`` to the ``shapesafe`` subcommands."""
    predict = sub.add_parser(
        "predict",
        help="predict with a saved predictor, one line per file",
        description="Load a predictor saved with ss.save and print the label and confidence "
        "of each file.",
    )
    predict.add_argument("artifact", help="the artifact directory (ss.save)")
    predict.add_argument("files", nargs="+", metavar="FILE", help="input files (e.g. photos)")
    predict.add_argument(
        "--json", action="store_true", help="print one JSON list instead of text lines"
    )
    predict.add_argument(
        "--top-k", type=int, default=None, help="also report the k most likely classes"
    )
    predict.set_defaults(run=_predict)
    info = sub.add_parser(
        "info",
        help="what a saved artifact holds: specs, versions, metrics, hashes",
        description="Verify an artifact (hashes, format version) and describe it.",
    )
    info.add_argument("artifact", help="the artifact directory (ss.save)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=_info)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _text(value: Any) -> str:
    if hasattr(value, "label") and hasattr(value, "confidence"):
        top = "".join(f"  {name} {p:.4f}" for name, p in getattr(value, "top", ()))
        return f"{value.label}\t{value.confidence:.4f}" + (f"\ttop:{top}" if top else "")
    return json.dumps(_jsonable(value))


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from ._artifacts._artifact import load
    from ._errors import ArtifactError, InputError
    from ._serving._predictor import Predictor

    try:
        predictor = load(args.artifact)
    except ArtifactError as e:
        print(f"shapesafe predict: {e}", file=sys.stderr)
        return 2
    if not isinstance(predictor, Predictor) or predictor.encoder is None:
        print(
            f"shapesafe predict: {args.artifact} holds a model without an encoder, so it cannot read files. "
            "Save a Predictor: ss.save(ss.Predictor(model, encoder, decoder), path).",
            file=sys.stderr,
        )
        return 2
    decoder = predictor.decoder
    if args.top_k is not None:
        if not hasattr(decoder, "top_k"):
            print("shapesafe predict: --top-k needs a Labels decoder.", file=sys.stderr)
            return 2
        try:
            decoder = dataclasses.replace(decoder, top_k=args.top_k)  # type: ignore[type-var]
        except ValueError as e:
            print(f"shapesafe predict: {e}", file=sys.stderr)
            return 2
    examples, good, failed = [], [], 0
    for file in args.files:
        try:
            examples.append(predictor.encode([file])[0])
            good.append(file)
        except InputError as e:
            failed += 1
            print(f"shapesafe predict: {file}: {e}", file=sys.stderr)
    results: list[dict[str, Any]] = []
    if examples:
        outputs = predictor.run(np.stack(examples))
        decoded = decoder(outputs) if decoder is not None else list(outputs)
        for file, value in zip(good, decoded, strict=True):
            if args.json:
                item = _jsonable(value)
                results.append(
                    {"file": file, **(item if isinstance(item, dict) else {"output": item})}
                )
            else:
                print(f"{file}\t{_text(value)}")
    if args.json:
        print(json.dumps(results, indent=1))
    return 1 if failed else 0


def _info(args: argparse.Namespace) -> int:
    from ._artifacts._artifact import info
    from ._errors import ArtifactError

    try:
        found = info(args.artifact)
    except ArtifactError as e:
        print(f"shapesafe info: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(found, indent=1))
        return 0
    rows = [
        ("artifact", found["path"]),
        ("version", f"{found['version']} ({found['kind']}, format {found['format_version']})"),
        ("created", str(found["created"])),
        ("input", found["input_spec"]),
        ("output", found["output_spec"]),
    ]
    if found.get("class_names"):
        rows.append(("classes", ", ".join(found["class_names"])))
    if found.get("preprocessing"):
        pre = found["preprocessing"]
        rows.append(("preprocessing", ", ".join(f"{k}={v}" for k, v in pre.items())))
    metrics = found.get("metrics") or {}
    rows.append(("metrics", ", ".join(f"{k}={v}" for k, v in metrics.items()) or "(none recorded)"))
    rows.append(
        ("versions", ", ".join(f"{k} {v}" for k, v in (found.get("versions") or {}).items()))
    )
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("files (sha256 verified)")
    for name, entry in sorted((found.get("files") or {}).items()):
        print(f"  {name:<20} {entry['bytes']:>10} bytes  {entry['sha256']}")
    return 0
