"""``shapesafe demo --transfer``: a pretrained backbone against the same network from scratch,
on the logo task with a tenth of the training labels.

Both runs see the same labelled photos (a stratified 10 % of the demo's training split), the
same augmentation and the same number of steps, and both are scored once, at the end, on the
demo's whole test split; the comparison is made at two training budgets (``BUDGETS``). The
pretrained run loads ``resnet.pretrained_small()`` (trained on "shapes in the wild",
``models/pretrain.py``, which never draws the logo), swaps its 12-way head for a 2-way one,
trains the head alone for ``HEAD_EPOCHS`` (one epoch, 5 steps) with the backbone frozen,
then fine-tunes everything (``optax.multi_transform`` with ``ss.param_labels``; the head and
the backbone both at 0.05, the scratch run's rate). The scratch run trains
``resnet.resnet_small(2, width=32)``, the same network, from random weights.
How the recipe was chosen is recorded in ``benchmarks/README.md`` ("Transfer recipe").
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any

LABELLED = 0.1
"""The share of the training photos whose labels the transfer demo uses."""
BUDGETS = (10, 40)
"""Epochs of each comparison (a short and a long training budget; 5 steps an epoch by default)."""
HEAD_EPOCHS = 1
"""Epochs at the start of the pretrained run that train the new head alone (the backbone frozen)."""
BATCH = 16
LR_HEAD = 0.05
LR_BACKBONE = 0.05
LR_SCRATCH = 0.05


def _sgd(lr: float, steps: int) -> Any:
    import optax

    return optax.sgd(optax.cosine_decay_schedule(lr, max(1, steps)), momentum=0.9)


def fine_tune(
    batches: Any,
    spec: Any,
    *,
    epochs: int,
    head_epochs: int,
    seed: int,
    lr_head: float = LR_HEAD,
    lr_backbone: float = LR_BACKBONE,
    progress: bool | None = None,
) -> Any:
    """The pretrained backbone with a new 2-way head: the head alone for ``head_epochs``, then all of it."""
    import optax

    import shapesafe as ss
    from shapesafe import layers as L

    from . import resnet

    backbone = resnet.pretrained_small()
    model = ss.build(backbone.blueprint[:-1] >> L.Linear(2).named("fc"), spec, seed=seed)
    ss.copy_weights(backbone, model, skip="fc", strict=True)
    if head_epochs:
        ss.freeze(model, range(len(model) - 1))  # all but the head
        head_steps = head_epochs * len(batches)
        ss.fit(
            model,
            batches,
            loss=ss.losses.cross_entropy,
            optimizer=_sgd(lr_head, head_steps),
            epochs=head_epochs,
            metrics=[ss.metrics.accuracy],
            progress=progress,
        )
        ss.unfreeze(model)
    if epochs > head_epochs:
        tune_steps = (epochs - head_epochs) * len(batches)
        labels = ss.param_labels(model, {"fc": "head"}, default="backbone")
        optimizer = optax.multi_transform(
            {"head": _sgd(lr_head, tune_steps), "backbone": _sgd(lr_backbone, tune_steps)}, labels
        )
        ss.fit(
            model,
            batches,
            loss=ss.losses.cross_entropy,
            optimizer=optimizer,
            epochs=epochs - head_epochs,
            metrics=[ss.metrics.accuracy],
            progress=progress,
        )
    return model


def from_scratch(
    net: Any,
    batches: Any,
    spec: Any,
    *,
    epochs: int,
    seed: int,
    lr: float = LR_SCRATCH,
    progress: bool | None = None,
) -> Any:
    """``net`` from random weights, SGD with momentum and a cosine decay, ``epochs`` epochs."""
    import shapesafe as ss

    model = ss.build(net, spec, seed=seed)
    ss.fit(
        model,
        batches,
        loss=ss.losses.cross_entropy,
        optimizer=_sgd(lr, epochs * len(batches)),
        epochs=epochs,
        metrics=[ss.metrics.accuracy],
        progress=progress,
    )
    return model


def transfer(args: argparse.Namespace, train: Any, test: Any) -> int:
    """Run the comparison on the demo's ``train`` and ``test`` datasets; write ``transfer.json``."""
    from jaxtyping import Array, UInt8

    import shapesafe as ss
    from shapesafe.data import random_flip

    from . import logo, resnet

    budgets = (args.epochs,) if args.epochs else ((2,) if args.quick else BUDGETS)
    batch = min(args.batch, 8) if args.quick else BATCH
    labelled = train.split(LABELLED, seed=args.seed)[0]
    batches = (
        labelled.cache()
        .shuffle(seed=args.seed)
        .map(random_flip, seed=args.seed)
        .map(logo.shift, seed=args.seed + 1)
        .batch(batch)
    )
    test_batches = test.cache().batch(64)
    spec = UInt8[Array, f"batch {args.size} {args.size} 3"]
    net = resnet.resnet_small(2, width=32, size=args.size).blueprint  # the pretrained one's layout
    quiet = False if args.quiet else None
    print(
        f"transfer: {len(labelled)} of the {len(train)} training photos labelled ({LABELLED:.0%}, stratified), "
        f"batch {batch} ({len(batches)} steps an epoch); each model is tested once, at the end, on all "
        f"{len(test)} test photos",
        flush=True,
    )

    rows: list[dict[str, Any]] = []
    for epochs in budgets:
        head_epochs = min(HEAD_EPOCHS, epochs - 1)
        steps = epochs * len(batches)
        t0 = time.perf_counter()
        print(
            f"\n== {steps} steps, pretrained: {head_epochs} epochs training the new head (backbone frozen), "
            f"then {epochs - head_epochs} fine-tuning all (head at {LR_HEAD:g}, backbone at {LR_BACKBONE:g})",
            flush=True,
        )
        model = fine_tune(
            batches, spec, epochs=epochs, head_epochs=head_epochs, seed=args.seed, progress=quiet
        )
        pretrained = float(
            ss.evaluate(model, test_batches, metrics=[ss.metrics.accuracy])["accuracy"]
        )
        t_pre = time.perf_counter() - t0
        t0 = time.perf_counter()
        print(
            f"== {steps} steps, scratch: {epochs} epochs from random weights (SGD at {LR_SCRATCH:g})",
            flush=True,
        )
        scratch_model = from_scratch(
            net, batches, spec, epochs=epochs, seed=args.seed, progress=quiet
        )
        scratch = float(
            ss.evaluate(scratch_model, test_batches, metrics=[ss.metrics.accuracy])["accuracy"]
        )
        rows.append(
            {
                "epochs": epochs,
                "steps": steps,
                "head_epochs": head_epochs,
                "test_accuracy": {"pretrained": round(pretrained, 4), "scratch": round(scratch, 4)},
                "seconds": {
                    "pretrained": round(t_pre, 1),
                    "scratch": round(time.perf_counter() - t0, 1),
                },
            }
        )

    result = {
        "task": f"logo in the wild, {LABELLED:.0%} of the training labels",
        "test_accuracy": rows[-1]["test_accuracy"],  # the longest budget
        "budgets": rows,
        "train_photos": len(train),
        "labelled_train_photos": len(labelled),
        "test_photos": len(test),
        "size": args.size,
        "batch": batch,
        "seed": args.seed,
        "model": repr(net),
        "recipe": {
            "pretrained": f"resnet.pretrained_small() with a new fc; sgd(cosine {LR_HEAD:g}, momentum 0.9) on "
            f"the head for the first {HEAD_EPOCHS} epoch(s), backbone frozen; then head "
            f"{LR_HEAD:g}, backbone {LR_BACKBONE:g} (optax.multi_transform, cosine)",
            "scratch": f"sgd(cosine {LR_SCRATCH:g}, momentum 0.9)",
            "augmentation": "random_flip, logo.shift",
        },
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer.json").write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"\nlogo in the wild, {len(labelled)} labelled training photos; test accuracy on {len(test)} photos:"
    )
    print(f"  {'steps':>5}  {'pretrained, fine-tuned':>22}  {'same network from scratch':>25}")
    for row in rows:
        acc, sec = row["test_accuracy"], row["seconds"]
        print(
            f"  {row['steps']:>5}  {acc['pretrained']:>14.3f} ({sec['pretrained']:>3.0f} s)  "
            f"{acc['scratch']:>17.3f} ({sec['scratch']:>3.0f} s)"
        )
    print(f"written to {out / 'transfer.json'}")
    return 0
