"""``shapesafe demo``: the talk end to end, and the settings tuned for it.

It makes (or reuses) the logo-in-the-wild photos (``logo.py``), reads them back with
``shapesafe.data.image_folder``, splits them 800 / 200, trains the talk's progression (MLP 64,
MLP 128, MLP 512, then the one-convolution CNN of ``talk.py``) and prints one table of what it
measured. The command line (``shapesafe._cli``) only parses arguments and calls ``run``; how
the settings were found is recorded in the documentation's experiments page.
"""

import argparse
import dataclasses
import functools
import os
import sys
import time
from pathlib import Path
from typing import Any

MODELS = ("mlp64", "mlp128", "mlp512", "cnn")
STYLE = "conference"  # the photos' style (``logo.STYLES``); --transfer was measured on "anywhere"
TRANSFER_STYLE = "anywhere"
DEFAULT_SIZE = 64
DEFAULT_EPOCHS = 30
LARGE = 96  # above this many pixels a side: fewer epochs by default, and the MLPs' rate scaled
# epochs above LARGE, per family: at 250 px a CNN epoch is about a minute on 2 free cores, and
# its test accuracy was still rising after 10 (0.890 then; docs/experiments.md)
DEFAULT_EPOCHS_LARGE = {"mlp": 10, "cnn": 15}
# SGD with momentum 0.9 and a cosine decay from this rate to 0; each family at the rate that
# suited it in a sweep on this task (the MLPs stop learning at the CNN's 0.01)
DEFAULT_LR = {"mlp": 0.003, "cnn": 0.01}
PHOTO_SIZE = (
    250  # the generated photos are the talk's 250x250; --size only changes what the models see
)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shapesafe" / "logo"


@dataclasses.dataclass
class _Result:
    name: str
    blueprint: str
    params: int
    best: float
    best_epoch: int
    final: float
    seconds: float
    epochs: int


def _blueprint(name: str) -> Any:
    """The talk's network (``talk.py``, which starts with ``Rescale(1 / 255)``)."""
    from . import talk

    return talk.cnn() if name == "cnn" else talk.mlp(int(name.removeprefix("mlp")))


def _default_lr(name: str, size: int) -> float:
    """``DEFAULT_LR`` (tuned at 64x64); for the MLPs, times ``(64 / size) ** 2`` above
    ``LARGE`` pixels (their only hidden layer's fan-in grows with the pixels, and so does the
    step SGD takes at a given rate). The CNN keeps its rate at every size: scaled so, its
    convolution learnt too slowly to train at 128 and 250 px (docs/experiments.md)."""
    if name == "cnn":
        return DEFAULT_LR["cnn"]
    return DEFAULT_LR["mlp"] * ((DEFAULT_SIZE / size) ** 2 if size > LARGE else 1.0)


def _default_epochs(name: str, size: int) -> int:
    """``DEFAULT_EPOCHS`` up to ``LARGE`` pixels a side, ``DEFAULT_EPOCHS_LARGE`` (per family)
    above."""
    return DEFAULT_EPOCHS if size <= LARGE else DEFAULT_EPOCHS_LARGE[name.rstrip("0123456789")]


def _epochs_text(results: list[_Result]) -> str:
    """``"30 epochs"``, or per model where they differ (``"epochs: MLP 64 10, CNN 15"``)."""
    counts = {r.epochs for r in results}
    if len(counts) == 1:
        return f"{counts.pop()} epochs"
    return "epochs: " + ", ".join(f"{_label(r.name)} {r.epochs}" for r in results)


def _label(name: str) -> str:
    return "CNN" if name == "cnn" else f"MLP {name.removeprefix('mlp')}"


def _plot_comparison(histories: dict[str, Any], path: Path) -> None:
    import matplotlib as mpl

    mpl.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, h in histories.items():
        ax.plot(range(1, len(h) + 1), h["eval_accuracy"], "-o", ms=3, label=_label(name))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title("logo in the wild: test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _table(results: list[_Result]) -> str:
    head = ("model", "parameters", "best test acc", "final test acc", "training time")
    rows = [
        (
            _label(r.name),
            f"{r.params:,}",
            f"{r.best:.3f} (epoch {r.best_epoch})",
            f"{r.final:.3f}",
            f"{r.seconds:.1f} s",
        )
        for r in results
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=True)]
    line = "  ".join("-" * w for w in widths)
    fmt = [f"{h:<{w}}" for h, w in zip(head, widths, strict=True)]
    out = ["  ".join(fmt), line]
    for row in rows:
        out.append(
            "  ".join(
                f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    """Run the demo with the parsed command-line arguments; returns the exit status."""
    return measure(args)[0]


def measure(args: argparse.Namespace) -> tuple[int, list[dict[str, Any]]]:
    """``run``, also returning what it measured: per model its name, parameters, best and
    final test accuracy, the best's epoch and the training seconds (for the benchmarks)."""
    import optax

    import shapesafe as ss
    from shapesafe.data import image_folder, random_flip

    from . import logo, talk

    if args.compilation_cache is not None:
        ss.compilation_cache(args.compilation_cache or None)
    if args.quick:
        args.n, args.epochs, args.batch = args.n or 40, args.epochs or 2, 8
        args.size = args.size or (DEFAULT_SIZE if args.transfer else 32)  # the backbone saw 64 px
        photo_size = (
            2 * args.size
        )  # made larger than the models see and scaled down, as in a full run
    else:
        args.n, args.size = args.n or 1000, args.size or DEFAULT_SIZE
        photo_size = max(PHOTO_SIZE, args.size)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown or not names:
        print(
            f"shapesafe demo: --models takes a comma-separated subset of {', '.join(MODELS)}; got {args.models!r}.",
            file=sys.stderr,
        )
        return 2, []
    style_name = args.style or (TRANSFER_STYLE if args.transfer else STYLE)
    if style_name not in logo.STYLES:
        print(
            f"shapesafe demo: --style takes one of {', '.join(logo.STYLES)}; got {style_name!r}.",
            file=sys.stderr,
        )
        return 2, []
    style = logo.STYLES[style_name]
    tag = (
        "" if style_name == "anywhere" else f"{style_name}-"
    )  # the first style's folders kept their name
    data = (
        Path(args.data)
        if args.data
        else _cache_dir() / f"v{logo.VERSION}-{tag}n{args.n}-seed{args.seed}-{photo_size}px"
    )
    out = Path(args.out)

    t0 = time.perf_counter()
    reused = logo.is_generated(data, n=args.n, seed=args.seed, size=photo_size, style=style)
    logo.generate(data, n=args.n, seed=args.seed, size=photo_size, style=style)
    print(
        f"data: {args.n} photos ({photo_size}x{photo_size} JPEG, style {style_name!r}) in {data} "
        f"({'reused' if reused else f'generated in {time.perf_counter() - t0:.1f} s'})"
    )

    ds = image_folder(data, size=(args.size, args.size))
    train, test = ds.split(0.8, seed=args.seed)
    print(
        f"split: {len(train)} train, {len(test)} test (stratified); classes {ds.class_names}; "
        f"the models see {args.size}x{args.size}x3 uint8 (--size)"
    )
    if args.transfer:  # pretrained backbone vs scratch on 10% of the labels (transfer_demo.py)
        from .transfer_demo import transfer

        return transfer(args, train, test), []
    # decoded once and kept in memory; each epoch, training photos are mirrored at random and,
    # where the style allows it (style.shift), shifted
    train_batches = train.cache().shuffle(seed=args.seed).map(random_flip, seed=args.seed)
    if style.shift:
        train_batches = train_batches.map(
            functools.partial(logo.shift, fraction=style.shift), seed=args.seed + 1
        )
    train_batches = train_batches.batch(args.batch)
    test_batches = test.cache().batch(args.batch)

    out.mkdir(parents=True, exist_ok=True)
    results: list[_Result] = []
    histories: dict[str, Any] = {}
    best: tuple[Any, _Result] | None = None
    for name in names:
        blueprint = _blueprint(name)
        model = ss.build(blueprint, talk.image_spec(args.size), seed=args.seed)
        params = ss.summary(model).trainable_params
        lr = args.lr if args.lr is not None else _default_lr(name, args.size)
        print(
            f"\n== {_label(name)}: {blueprint!r}\n   {params:,} parameters; SGD, momentum 0.9, "
            f"learning rate {lr:g} decaying to 0 (cosine)",
            flush=True,
        )
        log = out / f"{name}.jsonl"
        log.unlink(missing_ok=True)
        t0 = time.perf_counter()
        epochs = args.epochs or _default_epochs(name, args.size)
        schedule = optax.cosine_decay_schedule(lr, epochs * len(train_batches))
        history = ss.fit(
            model,
            train_batches,
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(schedule, momentum=0.9),
            epochs=epochs,
            eval_data=test_batches,
            metrics=[ss.metrics.accuracy],
            progress=False if args.quiet else None,
            log_file=log,
        )
        seconds = time.perf_counter() - t0
        acc = history["eval_accuracy"]
        top = max(range(len(acc)), key=lambda i: acc[i])
        results.append(
            _Result(name, repr(blueprint), params, acc[top], top + 1, acc[-1], seconds, epochs)
        )
        histories[name] = history
        history.plot(out / f"{name}.png")
        if best is None or acc[-1] > best[1].final:
            best = (model, results[-1])
    _plot_comparison(histories, out / "test_accuracy.png")
    assert best is not None  # names is not empty
    model, result = best
    clf = ss.Predictor(
        model, ss.encoders.Image(size=(args.size, args.size)), ss.decoders.Labels(ds.class_names)
    )
    ss.save(
        clf, out / "best_model", metrics={"accuracy": result.final}, overwrite=True
    )  # a rerun replaces its own output

    print(
        f"\nlogo in the wild: {len(train)} train / {len(test)} test photos at {args.size}x{args.size}, "
        f"{_epochs_text(results)}, batch {args.batch}, seed {args.seed}\n"
    )
    print(_table(results))
    print(
        f"\nwritten to {out}/: curves (<model>.png, test_accuracy.png), logs (<model>.jsonl), and the "
        f"{_label(result.name)} (best final test accuracy) as a predictor in best_model/ "
        f"(try: shapesafe predict {out / 'best_model'} PHOTO.jpg)"
    )
    return 0, [dataclasses.asdict(r) for r in results]


HELP = "the talk end to end: train MLPs and a CNN to spot a logo in photos"


def add_arguments(demo: argparse.ArgumentParser) -> None:
    """The demo's options, on the ``demo`` subcommand's parser."""
    demo.description = (
        "Make (or reuse) the logo-in-the-wild photos, read them with image_folder, split them "
        "80/20 (800/200 by default), train MLP 64, MLP 128, MLP 512 and the one-convolution CNN, and print a "
        "table of parameters, best and final test accuracy and training time. Writes curves, logs and the "
        f"best model to --out. With the defaults the models see {DEFAULT_SIZE}x{DEFAULT_SIZE} photos and the "
        "whole run takes about a minute and a half on 2 free CPU cores; --size 250 is the talk's exact "
        f"input ({DEFAULT_EPOCHS_LARGE['cnn']} epochs for the CNN and {DEFAULT_EPOCHS_LARGE['mlp']} for the "
        "MLPs by default there, about a minute an epoch for the CNN on 2 free CPU cores; the "
        "experiments page has the measured runs)."
    )

    demo.add_argument(
        "--size",
        type=int,
        default=None,
        help=f"height and width the models see (default {DEFAULT_SIZE}; the talk's is 250)",
    )
    demo.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"training epochs per model (default {DEFAULT_EPOCHS}; above {LARGE} pixels "
        f"{DEFAULT_EPOCHS_LARGE['cnn']} for the CNN, {DEFAULT_EPOCHS_LARGE['mlp']} for the MLPs)",
    )
    demo.add_argument(
        "--n", type=int, default=None, help="photos to generate, half with the logo (default 1000)"
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the photos, the split, the order and the weights (default 0)",
    )
    demo.add_argument(
        "--style",
        default=None,
        help=f"how the photos are made, one of the measured styles in models/logo.py "
        f"(default {STYLE!r}: the logo on a conference's recurring screens and banners; "
        f"{TRANSFER_STYLE!r} is the first style, the logo anywhere, and --transfer's default)",
    )
    demo.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    demo.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"initial SGD learning rate for every model (default {DEFAULT_LR['mlp']:g} for the "
        f"MLPs, times (64 / size)^2 above {LARGE} pixels, and {DEFAULT_LR['cnn']:g} for the CNN; "
        "momentum 0.9, cosine decay to 0)",
    )
    demo.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated subset of {','.join(MODELS)} (default: all, in that order)",
    )
    demo.add_argument(
        "--data",
        default=None,
        help=f"folder for the photos (default {_cache_dir()}/<parameters>; "
        "reused when already generated)",
    )
    demo.add_argument(
        "--out",
        default="shapesafe-demo",
        help="folder for curves, logs and the best model (default ./shapesafe-demo)",
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run to check the installation: 40 photos at 32x32, 2 epochs",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument(
        "--compilation-cache",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="keep compiled programs on disk (ss.compilation_cache), so the next run starts "
        "at once (default folder ~/.cache/shapesafe/xla)",
    )
    demo.add_argument(
        "--transfer",
        action="store_true",
        help="transfer learning instead: with 10%% of the training labels, fine-tune the pretrained "
        "ResNet backbone (pretrain.py) and train the same network from scratch for as many "
        "steps; print both test accuracies and write transfer.json to --out (a few minutes)",
    )
