"""Write the notebooks of this folder from the cells below, executed, with their outputs.

Edit the cells here, then run ``python notebooks/make_notebooks.py`` (every notebook) or
``python notebooks/make_notebooks.py 01_logo_classifier.ipynb`` (only the ones named); commit
both this script and the ``.ipynb`` files. ``tests/integration/test_notebooks.py`` executes every notebook
again, with ``SHAPESAFE_NOTEBOOK_QUICK=1``.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

LOGO_CLASSIFIER = [
    new_markdown_cell("""# Is there a logo in this photo? The talk, step by step

The talk builds a classifier for photos that may contain a logo: look at the data, write
down the **signature** of the model (the type of its input), build a **baseline**, read its
summary, **train** it, **grow** it, add a **convolution**, **compare**, **predict** on new
photos and **save** the result. This notebook does the same with shapesafe, on the
logo-in-the-wild photos that `models/logo.py` makes from real photographs shipped by
scikit-learn and matplotlib (nothing is downloaded); `shapesafe demo` runs the same
comparison from the command line.

The recipe is the demo's: 1,000 photos (800 train, 200 test) in the "conference" style, shown
to the models at 64 x 64 pixels, 30 epochs, SGD with momentum and a cosine decay, random flips.
The outputs below come from that full run (a few minutes on 2 CPU cores). CI runs this
notebook with `SHAPESAFE_NOTEBOOK_QUICK=1`: 120 photos at 32 x 32 pixels for 2 epochs, to
check that every cell works; its numbers mean nothing."""),
    new_code_cell("""import os
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import optax
from jaxtyping import Array, UInt8

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.data import image_folder, random_flip
from shapesafe.models import logo, talk

%config InlineBackend.figure_formats = ["jpeg"]  # photos: JPEG keeps this notebook small

QUICK = os.environ.get("SHAPESAFE_NOTEBOOK_QUICK") == "1"  # CI: a tiny setting
N, PHOTO, SIZE, EPOCHS = (120, 64, 32, 2) if QUICK else (1000, 250, 64, 30)
SEED = 0
STYLE = "conference"  # the demo's style (logo.STYLES): the logo on a conference's screens and banners
print(f"{N} photos made at {PHOTO} x {PHOTO}, seen by the models at {SIZE} x {SIZE}; {EPOCHS} epochs")"""),
    new_markdown_cell("""## 1. The data

`logo.generate` writes JPEG photos in two class folders, `logo/` and `no_logo/`, once (the
same cache as `shapesafe demo`). As at a conference, the logo shows on screens and banners
whose places and sizes recur from photo to photo (three *slots*, each shape within 3 % of
the photo's size of its slot), and every photo without the logo holds one or two red
look-alikes in those same places (a single ribbon, a disc, a no-entry sign, the logo's
shape in another colour...), so neither colour nor place gives the answer away: a random
forest on global colour statistics scores 0.66 in cross-validation."""),
    new_code_cell("""cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "shapesafe" / "logo"
root = logo.generate(cache / f"v{logo.VERSION}-{STYLE}-n{N}-seed{SEED}-{PHOTO}px", n=N, seed=SEED,
                     size=PHOTO, style=logo.STYLES[STYLE])
sorted(p.name for p in root.iterdir())"""),
    new_markdown_cell("""`image_folder` reads the class folders back as a typed dataset: every element is a dict
whose spec is a jaxtyping annotation per key, the same language the models use."""),
    new_code_cell("""ds = image_folder(root, size=(SIZE, SIZE))
print(len(ds), "photos, classes", ds.class_names)
ds.spec"""),
    new_code_cell("""photos = image_folder(root, size=(PHOTO, PHOTO))  # the same files at full size, to look at
fig, axes = plt.subplots(2, 6, figsize=(12, 4.6))
for ax, element in zip(axes.flat, photos.shuffle(seed=3).take(12), strict=True):
    ax.imshow(element["image"])
    ax.set_title(photos.class_names[int(element["label"])], fontsize=10)
    ax.axis("off")
fig.suptitle(f"photos at {PHOTO} x {PHOTO}", fontsize=11)
fig.tight_layout()"""),
    new_code_cell("""fig, axes = plt.subplots(1, 6, figsize=(12, 2.4))
for ax, element in zip(axes, ds.shuffle(seed=3).take(6), strict=True):
    ax.imshow(element["image"])
    ax.set_title(ds.class_names[int(element["label"])], fontsize=10)
    ax.axis("off")
fig.suptitle(f"what the models see: the first six at {SIZE} x {SIZE}", fontsize=11)
fig.tight_layout()"""),
    new_markdown_cell("""Split 80 / 20 (stratified), decode once (`cache`), and each epoch mirror the training
photos at random (not shift them: the slots are where the logo is, as at the conference).
`batch` adds a leading `batch` dimension to the spec, and a `mask` marking the real
examples of a padded last batch."""),
    new_code_cell("""train, test = ds.split(0.8, seed=SEED)
print(len(train), "train,", len(test), "test")
train_batches = train.cache().shuffle(seed=SEED).map(random_flip, seed=SEED).batch(32)
test_batches = test.cache().batch(32)
train_batches.spec"""),
    new_markdown_cell("""## 2. The signature

A model's input spec is its type, a jaxtyping annotation: a batch of `SIZE x SIZE` RGB
photos, one byte per channel. `batch` is a name, not a number: the model will accept any
batch size. Everything else is inferred from this, and it matches the `image` of the
batches above."""),
    new_code_cell("""spec = UInt8[Array, f"batch {SIZE} {SIZE} 3"]  # what talk.image_spec(SIZE) returns
print("model input:  ", spec.dtypes, spec.dim_str)
print("data batches: ", train_batches.spec["image"].dtypes, train_batches.spec["image"].dim_str)"""),
    new_markdown_cell("""## 3. The baseline

The talk's first network: flatten the pixels, turn the bytes into floats, one hidden layer of
64 neurons, two outputs (one per class). `models/talk.py` writes it with `L.Rescale(1 / 255)`
where the talk had `L.Cast(jnp.float32)`: the same step from `uint8` to `float32`, with the
pixels scaled to [0, 1] so that SGD can train it. A blueprint is configuration only:
`Linear(64)` does not know its input size yet."""),
    new_code_cell("""baseline = talk.mlp(64)
baseline"""),
    new_markdown_cell("""`ss.build` propagates the spec through every layer with symbolic shapes: the model is
checked for every batch size at once, without data and without computing anything. The
summary reads like the talk's: almost all of the parameters are in the first `Linear`, one
weight per pixel, channel and neuron."""),
    new_code_cell("""model = ss.build(baseline, spec, seed=SEED)
ss.summary(model)"""),
    new_markdown_cell("""Forget the conversion and the first `Linear` would receive bytes: the build refuses, names
the layer and says what to insert."""),
    new_code_cell("""try:
    ss.build(L.Flatten() >> L.Linear(64) >> L.ReLU() >> L.Linear(2), spec)
except ss.ShapeError as error:
    print(f"ShapeError: {error}")"""),
    new_markdown_cell("""## 4. Train and plot

The demo's recipe: cross-entropy, SGD with momentum 0.9 and a cosine decay to 0, from 0.003
for the MLPs and 0.01 for the CNN. `fit` checks the data's spec against the model's before
the first batch, then runs one jitted step per batch; the test accuracy is measured after
each epoch."""),
    new_code_cell("""def train(model, learning_rate):
    schedule = optax.cosine_decay_schedule(learning_rate, EPOCHS * len(train_batches))
    start = time.perf_counter()
    history = ss.fit(model, train_batches, loss=ss.losses.cross_entropy,
                     optimizer=optax.sgd(schedule, momentum=0.9), epochs=EPOCHS,
                     eval_data=test_batches, metrics=[ss.metrics.accuracy], progress=False)
    return history, time.perf_counter() - start


runs = {}  # name -> (model, history, seconds)
history, seconds = train(model, 0.003)
runs["MLP 64"] = (model, history, seconds)
print(history)
history.plot();"""),
    new_markdown_cell("""## 5. Grow the model

The talk widens the hidden layer. A network whose first layer weighs each pixel position
separately can learn what the logo looks like on each screen, but each screen's logo
wanders by a few pixels and is as large as its look-alikes: more neurons help a little."""),
    new_code_cell("""for width in (128, 512):
    wide = ss.build(talk.mlp(width), spec, seed=SEED)
    history, seconds = train(wide, 0.003)
    runs[f"MLP {width}"] = (wide, history, seconds)
    print(f"MLP {width}: {ss.summary(wide).trainable_params:,} parameters, "
          f"final test accuracy {history['eval_accuracy'][-1]:.3f}")"""),
    new_markdown_cell("""## 6. Add the convolution

The talk's CNN: 32 filters of 3 x 3 pixels slide over the photo, so the same small pattern
(an edge of a ribbon, a white gap) is found wherever it is; a ReLU, a 2 x 2 max pooling,
then a dense layer of 512 neurons. The summary shows every intermediate shape."""),
    new_code_cell("""cnn = ss.build(talk.cnn(), spec, seed=SEED)
print(talk.cnn())
ss.summary(cnn)"""),
    new_code_cell("""history, seconds = train(cnn, 0.01)
runs["CNN"] = (cnn, history, seconds)
print(history)
history.plot();"""),
    new_markdown_cell("""## 7. Compare"""),
    new_code_cell("""print(f"{'model':8} {'parameters':>11} {'best test acc':>18} {'final test acc':>15} {'training':>9}")
for name, (m, h, seconds) in runs.items():
    acc = h["eval_accuracy"]
    best = int(np.argmax(acc))
    print(f"{name:8} {ss.summary(m).trainable_params:>11,} {acc[best]:>7.3f} (epoch {best + 1:>2}) "
          f"{acc[-1]:>15.3f} {seconds:>7.1f} s")

fig, ax = plt.subplots(figsize=(6, 4))
for name, (_, h, _) in runs.items():
    ax.plot(range(1, len(h) + 1), h["eval_accuracy"], "-o", ms=3, label=name)
ax.set_xlabel("epoch")
ax.set_ylabel("test accuracy")
ax.set_title("logo in the wild: test accuracy")
ax.grid(alpha=0.3)
ax.legend();"""),
    new_markdown_cell("""## 8. Predict

A `Predictor` makes the model a function from a photo to a label: its encoder resizes any
photo (a file, a Pillow image or an array) to the model's input, its decoder turns the
outputs into a label and a confidence. Here: twelve test photos, given at full size."""),
    new_code_cell("""clf = ss.Predictor(cnn, encoder=ss.encoders.Image(size=(SIZE, SIZE)),
                   decoder=ss.decoders.Labels(ds.class_names))
_, test_photos = photos.split(0.8, seed=SEED)  # the same split, at full size
shown = list(test_photos.shuffle(seed=1).take(12))
predictions = clf([element["image"] for element in shown])
predictions[:3]"""),
    new_code_cell("""fig, axes = plt.subplots(2, 6, figsize=(12, 4.8))
for ax, element, p in zip(axes.flat, shown, predictions, strict=True):
    truth = ds.class_names[int(element["label"])]
    ax.imshow(element["image"])
    ax.set_title(f"{p.label} {p.confidence:.2f}" + ("" if p.label == truth else f"\\n(is {truth})"),
                 color="black" if p.label == truth else "red", fontsize=10)
    ax.axis("off")
fig.suptitle("the CNN on test photos: predicted label and confidence", fontsize=11)
fig.tight_layout()"""),
    new_markdown_cell("""## 9. Save, and load back

`ss.save` writes a directory: the architecture as JSON, the weights as safetensors, the
specs, the class names, the encoder's preprocessing and the metrics, each file hashed.
`ss.load` verifies it and rebuilds the model without running any code from it."""),
    new_code_cell("""folder = Path(tempfile.mkdtemp()) / "logo" / "1"
ss.save(clf, folder, metrics={"accuracy": runs["CNN"][1]["eval_accuracy"][-1]})
print(sorted(p.name for p in folder.iterdir()))
loaded = ss.load(folder)
again = loaded([element["image"] for element in shown])
print(loaded.metrics)
print("same predictions:", [p.label for p in again] == [p.label for p in predictions])"""),
]

WALKTHROUGH = [
    new_markdown_cell("""# shapesafe, end to end

The whole story in six steps: **data** with a typed spec, an **architecture** composed of
blueprints, a **build** that infers every size from the input spec (and refuses mistakes before
any number is computed), **training** with `ss.fit`, a **comparison**, and **predictions**.

The talk does this on photos with and without a logo (`models/logo.py` generates them and
`shapesafe demo` trains on them). To run in well under a minute, this notebook uses real
images that scikit-learn ships: its 1,797 handwritten digits, written as image files in
class folders, which is exactly what a folder of photos looks like. Nothing is downloaded."""),
    new_code_cell("""import tempfile
from pathlib import Path

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from PIL import Image
from sklearn.datasets import load_digits

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.data import image_folder
from shapesafe.models import talk

SIZE = 16  # pixels; the talk's photos are 250 x 250"""),
    new_markdown_cell("""## 1. Data: class folders become a typed dataset

One folder per class, one PNG file per digit (upscaled to 16 x 16 RGB)."""),
    new_code_cell("""root = Path(tempfile.mkdtemp()) / "digits"
digits = load_digits()
for i, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
    folder = root / str(label)
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray((pixels * 255 / 16).astype(np.uint8)).resize((SIZE, SIZE))
    image.convert("RGB").save(folder / f"{i:04d}.png")
sorted(p.name for p in root.iterdir())"""),
    new_markdown_cell("""`image_folder` reads the class folders. Every dataset knows the spec of its elements: a
jaxtyping annotation per key, the same language the models use."""),
    new_code_cell("""ds = image_folder(root, size=(SIZE, SIZE))
print(len(ds), "images, classes", ds.class_names)
ds.spec"""),
    new_code_cell("""fig, axes = plt.subplots(1, 10, figsize=(10, 1.4))
for ax, element in zip(axes, ds.shuffle(seed=1), strict=False):
    ax.imshow(element["image"])
    ax.set_title(ds.class_names[int(element["label"])])
    ax.axis("off")"""),
    new_markdown_cell("""Split (stratified), shuffle, batch. `batch` adds a leading `batch` dimension to the spec
and a `mask` marking the real examples of a padded last batch. `cache` decodes each file once."""),
    new_code_cell("""train, test = ds.cache().split(0.8, seed=0)
train = train.shuffle(seed=0).batch(32)
test = test.batch(64)
train.spec"""),
    new_markdown_cell("""## 2. Architecture: blueprints composed with `>>`

A blueprint is configuration only: `Linear(64)` does not know its input size yet. These are
the talk's two networks (`models/talk.py`), with 10 classes instead of 2."""),
    new_code_cell("""baseline = talk.mlp(64, classes=10)
cnn = talk.cnn(filters=16, hidden=64, classes=10)
print(baseline)
print(cnn)
cnn[:4]  # blueprints slice like lists: the convolutional front"""),
    new_markdown_cell("""## 3. Build: the input spec is the type of the input

`ss.build` propagates the spec through every layer with symbolic shapes, so the model is
checked for every batch size at once, without data and without computing anything."""),
    new_code_cell("""spec = talk.image_spec(SIZE)  # UInt8[Array, "batch 16 16 3"]
model = ss.build(baseline, spec, seed=0)
ss.summary(model)"""),
    new_markdown_cell("""### A mistake, caught at build time

Forget the `Rescale` and the first `Linear` receives `uint8` pixels. The error names the layer,
what it expected, what it got and where that came from, and the fix."""),
    new_code_cell("""try:
    ss.build(L.Flatten() >> L.Linear(64) >> L.ReLU() >> L.Linear(10), spec)
except ss.ShapeError as error:
    print(f"ShapeError: {error}")"""),
    new_markdown_cell("""### Data that does not fit the model, caught before the first batch

The same folder read at 12 x 12 pixels: `fit` compares the dataset's spec with the model's
input spec before reading anything."""),
    new_code_cell("""small = image_folder(root, size=(12, 12)).batch(32)
try:
    ss.fit(model, small, loss=ss.losses.cross_entropy, optimizer=optax.sgd(1e-4), epochs=1)
except ss.ShapeError as error:
    print(f"ShapeError: {error}")"""),
    new_markdown_cell("""## 4. Train

`fit` runs a jitted step over the model's state; the loss goes down and the test accuracy
is measured after each epoch. The layers' shape checks ran once, while JAX traced the step.
(Adam for a quick start; the talk uses plain SGD.)"""),
    new_code_cell("""history = ss.fit(model, train, loss=ss.losses.cross_entropy, optimizer=optax.adam(1e-3),
                 epochs=5, eval_data=test, metrics=[ss.metrics.accuracy])
history.plot();"""),
    new_markdown_cell("""Grow the model: the talk's convolution (3 x 3 filters, ReLU, 2 x 2 max pooling) in front
of the dense layers. The summary shows every intermediate shape."""),
    new_code_cell("""cnn_model = ss.build(cnn, spec, seed=0)
print(ss.summary(cnn_model))
cnn_history = ss.fit(cnn_model, train, loss=ss.losses.cross_entropy, optimizer=optax.adam(1e-3),
                     epochs=5, eval_data=test, metrics=[ss.metrics.accuracy])
cnn_history.plot();"""),
    new_markdown_cell("""## 5. Compare"""),
    new_code_cell("""for name, m, h in (("MLP 64", model, history), ("CNN", cnn_model, cnn_history)):
    params = ss.summary(m).trainable_params
    print(f"{name:8} {params:>8,} parameters   test accuracy {h['eval_accuracy'][-1]:.3f}")"""),
    new_markdown_cell("""## 6. Predict

`ss.predict` returns the model's outputs (logits, `Float32[n, 10]`) for every test example,
padding removed. A built model is also a plain function of a batch."""),
    new_code_cell("""logits = ss.predict(cnn_model, test)
images = np.concatenate([b["image"][b["mask"]] for b in test])
labels = np.concatenate([b["label"][b["mask"]] for b in test])
predicted = logits.argmax(axis=-1)
print(logits.shape, "accuracy", float(np.mean(predicted == labels)))

fig, axes = plt.subplots(1, 10, figsize=(10, 1.6))
shown = np.random.default_rng(0).choice(len(labels), 10, replace=False)
for ax, image, p, y in zip(axes, images[shown], predicted[shown], labels[shown], strict=True):
    ax.imshow(image)
    ax.set_title(f"{ds.class_names[p]}" + ("" if p == y else f" (is {ds.class_names[y]})"),
                 color="black" if p == y else "red", fontsize=9)
    ax.axis("off")"""),
    new_code_cell("""cnn_model.eval()
cnn_model(jnp.asarray(images[:2])).shape  # a (2, 16, 16, 3) uint8 batch in, (2, 10) logits out"""),
]

SEQUENCES = [
    new_markdown_cell("""# Sequences: an LSTM reads handwritten digits row by row

Each of scikit-learn's 8 x 8 digits becomes a sequence of `time = 8` rows of `features = 8`
pixels, top to bottom. A recurrent layer (`L.LSTM` or `L.GRU`) reads the rows and a `Linear`
head classifies its last state. The model and the data live in `models/rnn.py`."""),
    new_code_cell("""import matplotlib.pyplot as plt
import numpy as np
import optax
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.models import rnn"""),
    new_markdown_cell("## The data"),
    new_code_cell("""train, test = rnn.digits_rows(seed=0)
print(len(train), "train,", len(test), "test")
train.spec"""),
    new_code_cell("""first = next(iter(train))
print("label", int(first["label"]), "- the sequence, one row per step:")
print(np.round(first["x"], 1))
plt.figure(figsize=(1.5, 1.5))
plt.imshow(first["x"], cmap="gray_r")
plt.axis("off");"""),
    new_markdown_cell("## The model"),
    new_code_cell("""net, spec = rnn.classifier(L.LSTM, hidden=64)  # spec: Float32[Array, "batch 8 8"]
print(net)
model = ss.build(net, spec, seed=0)
ss.summary(model)"""),
    new_markdown_cell("""## Mistakes the types catch

Flattened digits have no time axis: the LSTM refuses them at build time and says how to add
one. And a built model refuses inputs unlike the spec it was built for."""),
    new_code_cell("""try:
    ss.build(net, Float32[Array, "batch 64"])
except ss.ShapeError as error:
    print(f"ShapeError: {error}")"""),
    new_code_cell("""raw = (first["x"][None] * 16).astype(np.uint8)  # the 0..16 intensities, as integers
try:
    model(raw)
except ss.ShapeError as error:
    print(f"ShapeError: {error}")"""),
    new_markdown_cell("## Train"),
    new_code_cell("""history = ss.fit(model, train.shuffle(seed=0).batch(32), loss=ss.losses.cross_entropy,
                 optimizer=optax.adam(1e-2), epochs=6, eval_data=test.batch(128),
                 metrics=[ss.metrics.accuracy])
history.plot();"""),
    new_markdown_cell(
        """The same recipe with a GRU (`rnn.train_digits` is the cell above in one call):"""
    ),
    new_code_cell("""gru_model, gru_history = rnn.train_digits(L.GRU, hidden=64, epochs=6)
for name, h in (("LSTM", history), ("GRU", gru_history)):
    print(f"{name}: test accuracy {h['eval_accuracy'][-1]:.3f}")"""),
    new_markdown_cell("## Predict"),
    new_code_cell("""logits = ss.predict(model, test.batch(128))
_, _, x_test, y_test = rnn.digits_arrays(seed=0)
predicted = logits.argmax(axis=-1)
print(logits.shape, "accuracy", float(np.mean(predicted == y_test)))
wrong = np.flatnonzero(predicted != y_test)[:8]
fig, axes = plt.subplots(1, max(len(wrong), 1), figsize=(8, 1.4), squeeze=False)
for ax, i in zip(axes[0], wrong, strict=False):
    ax.imshow(x_test[i], cmap="gray_r")
    ax.set_title(f"{predicted[i]} (is {y_test[i]})", color="red", fontsize=9)
    ax.axis("off")
fig.suptitle("test digits the LSTM gets wrong", fontsize=10);"""),
    new_markdown_cell("""## One build, every sequence length

`time` can stay symbolic in the spec: the LSTM's weights do not depend on it, so one build
serves sequences of any length."""),
    new_code_cell("""any_length = ss.build(L.LSTM(64) >> L.Linear(10), Float32[Array, "batch time 8"], seed=0)
print(ss.summary(any_length).input_spec, "->", ss.summary(any_length).output_spec)
any_length(x_test[:3, :5]).shape, any_length(x_test[:3]).shape  # 5 rows, then all 8"""),
]

SHAPE_ERRORS = [
    new_markdown_cell("""# A gallery of the mistakes the types catch

Each cell makes one classic deep-learning mistake and shows the error a user sees: raised
when the model is **built** or before the first batch is **trained on**, never as a wrong
accuracy hours later, and never as a raw XLA stack. `show` prints the exception as Python
would print its last line."""),
    new_code_cell("""import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float32, UInt8

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.models import talk

IMAGES = UInt8[Array, "batch 64 64 3"]


def show(make):
    try:
        make()
    except Exception as e:
        print(f"{type(e).__module__}.{type(e).__name__}: {e}")
    else:
        print("no error")"""),
    new_markdown_cell("""## 1. Missing `Cast`: uint8 pixels into a dense layer"""),
    new_code_cell(
        """show(lambda: ss.build(L.Flatten() >> L.Linear(64) >> L.ReLU() >> L.Linear(2), IMAGES))"""
    ),
    new_markdown_cell("""## 2. Missing `Flatten`: an image into a layer that needs a flat vector

`Linear` acts on the last axis (like Keras' `Dense`), so without `Flatten` the network keeps the
image's height and width, and the error appears where the output is checked: the model's
output is not `(batch, classes)`, which the loss refuses before any step."""),
    new_code_cell("""model = ss.build(L.Cast(jnp.float32) >> L.Linear(64) >> L.ReLU() >> L.Linear(2), IMAGES)
print(ss.summary(model).output_spec)
images = np.zeros((8, 64, 64, 3), np.uint8)
labels = np.zeros(8, np.int32)
show(lambda: ss.losses.cross_entropy(model(images), jnp.asarray(labels)))"""),
    new_markdown_cell("""## 3. Channels-first input into a channels-last model"""),
    new_code_cell("""cnn = ss.build(talk.cnn(filters=4, hidden=8), IMAGES)
show(lambda: cnn(np.zeros((8, 3, 64, 64), np.uint8)))"""),
    new_markdown_cell("""## 4. A convolution on an image without a channel axis"""),
    new_code_cell("""show(lambda: ss.build(L.Conv2D(8, (3, 3)), Float32[Array, "batch 28 28"]))"""),
    new_markdown_cell("""## 5. Wrong label shape: `(batch, 1)` labels where the loss wants `(batch,)`

A silent broadcast here would compare every prediction with every label; the loss refuses."""),
    new_code_cell("""logits = jnp.zeros((8, 2))
show(lambda: ss.losses.cross_entropy(logits, jnp.zeros((8, 1), jnp.int32)))"""),
    new_code_cell(
        """show(lambda: ss.losses.binary_cross_entropy(jnp.zeros((8, 1)), jnp.zeros((8,))))"""
    ),
    new_markdown_cell("""## 6. A pipeline that does not fit the model

The dataset's images are 32 x 32; the model was built for 64 x 64. `fit` compares the
dataset's spec with the model's input spec and refuses before reading a single batch."""),
    new_code_cell("""data = ss.data.from_arrays({"image": np.zeros((16, 32, 32, 3), np.uint8),
                             "label": np.zeros(16, np.int32)}).batch(8)
print(data.spec)
show(lambda: ss.fit(cnn, data, loss=ss.losses.cross_entropy, optimizer=optax.sgd(0.01), epochs=1))"""),
    new_markdown_cell("""## 7. A label outside the model's classes

Inside a jitted step an out-of-range label cannot raise (it silently gives NaN), so `fit`
checks every batch's labels on the host."""),
    new_code_cell("""data = ss.data.from_arrays({"image": np.zeros((16, 64, 64, 3), np.uint8),
                             "label": np.array([0, 1] * 7 + [5, 0], np.int32)}).batch(8)
show(lambda: ss.fit(cnn, data, loss=ss.losses.cross_entropy, optimizer=optax.sgd(0.01), epochs=1,
                    progress=False))"""),
    new_markdown_cell("""## 8. Mistakes in the blueprint itself

Bad configuration is a `ValueError` when the blueprint is made, listing what is allowed."""),
    new_code_cell("""show(lambda: L.Conv2D(32, (3, 3), padding="full"))
show(lambda: L.Linear(0))
show(lambda: L.Dropout(1.5))"""),
    new_markdown_cell("""## And none of it costs anything once compiled

The checks run while JAX traces; the compiled program holds only the layers' arithmetic."""),
    new_code_cell("""graphdef, state = nnx.split(cnn)
jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x))(state, images)
sorted({str(e.primitive) for e in jaxpr.jaxpr.eqns})"""),
]

TRANSFER = [
    new_markdown_cell("""# Transfer learning: a pretrained backbone, a new head, fine-tuning

With few labels, start from a network trained on other images: chop off its classification
layer, put in a new head, train the head with the rest frozen, then fine-tune everything.
Here the labels are a tenth of the logo
task's training photos (80 of 800), and the backbone is `models/resnet.py`'s `resnet_small`,
pretrained on "shapes in the wild" (`models/pretrain.py`: which of 11 geometric shapes, or
none, is pasted on a crop of the photos scikit-learn and matplotlib ship; the logo is never
drawn). `shapesafe demo --transfer` runs the same comparison from the command line.

The outputs below come from a full run (80 labelled photos; 10 and 40 epochs of 5 steps).
CI runs this notebook with `SHAPESAFE_NOTEBOOK_QUICK=1`, which uses a small setting (120
photos, 2 epochs) to finish in seconds; its numbers mean nothing."""),
    new_code_cell("""import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import optax

import shapesafe as ss
from shapesafe.models import logo, pretrain, resnet
from shapesafe import layers as L
from shapesafe.data import image_folder, random_flip

QUICK = os.environ.get("SHAPESAFE_NOTEBOOK_QUICK") == "1"
N, BUDGETS = (120, (2,)) if QUICK else (1000, (10, 40))  # photos; epochs of each comparison
SIZE, BATCH, SEED = 64, 16, 0"""),
    new_markdown_cell("""## The pretrained backbone

`resnet.pretrained_small()` loads the shipped `ss.save` artifact; `pretrain.json` beside its
weights records how it was trained and how well it does on its own task."""),
    new_code_cell("""backbone = resnet.pretrained_small()
print(ss.summary(backbone))
record = json.loads((pretrain.WEIGHTS / "pretrain.json").read_text())
{k: record[k] for k in ("classes", "steps", "source_train_accuracy", "source_held_out_accuracy", "seconds")}"""),
    new_code_cell("""images, labels = pretrain.make(12, split="held_out")
guess = np.asarray(backbone(images)).argmax(axis=1)
fig, axes = plt.subplots(1, 12, figsize=(12, 1.6))
for ax, image, label, g in zip(axes, images, labels, guess, strict=True):
    ax.imshow(image)
    ax.set_title(f"{pretrain.SHAPES[label]}\\n({pretrain.SHAPES[g]})", fontsize=8)
    ax.axis("off")
fig.suptitle("source task, held-out photos: true (predicted)", fontsize=9)
plt.show()"""),
    new_markdown_cell("""## The target task, with a tenth of the labels

The logo photos (`models/logo.py`), split 80 / 20 as in `shapesafe demo`; of the training
photos, a stratified 10 % keep their labels. The test split is used once per model, at the end."""),
    new_code_cell("""cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "shapesafe" / "logo"
photo_size = 128 if QUICK else 250  # scaled down to SIZE by image_folder
root = logo.generate(cache / f"v{logo.VERSION}-n{N}-seed{SEED}-{photo_size}px", n=N, seed=SEED, size=photo_size)
train, test = image_folder(root, size=(SIZE, SIZE)).split(0.8, seed=SEED)
labelled = train.split(0.1, seed=SEED)[0]
batches = (labelled.cache().shuffle(seed=SEED).map(random_flip, seed=SEED)
           .map(logo.shift, seed=SEED + 1).batch(BATCH))
test_batches = test.cache().batch(64)
print(f"{len(labelled)} labelled training photos ({len(batches)} batches), {len(test)} test photos")"""),
    new_markdown_cell("""## Head swap in a few lines

`net[:-1]` drops the 12-way head, `>> L.Linear(2)` adds the new one, `ss.build` infers every
size, and `ss.copy_weights` carries over every variable whose layer path and shape match
(`strict=True` would list anything else; the new head is skipped by name).
`ss.freeze` turns the backbone's parameters into `ss.Frozen` ones: no gradient, no optimizer
state, and its BatchNorm layers keep their running statistics."""),
    new_code_cell("""net = backbone.blueprint[:-1] >> L.Linear(2).named("fc")
model = ss.build(net, backbone.input_spec, seed=SEED)
copied = ss.copy_weights(backbone, model, skip="fc", strict=True)
ss.freeze(model, range(len(model) - 1))  # everything but the head
print(f"{len(copied)} variables copied; trainable parameters now {ss.summary(model).trainable_params:,}")"""),
    new_markdown_cell("""Train the head alone for one epoch (5 steps), then unfreeze and fine-tune everything:
`ss.param_labels` names each trainable parameter's group by layer, `optax.multi_transform`
gives each group its own optimizer (`ss.fit` passes the parameters as one tree; the labels
function maps it to a tree of labels). Chosen on training photos outside the labelled 80
(never the test photos), the backbone's rate here is the head's and the scratch run's, 0.05:
a smaller one (0.02) after a longer frozen phase did worse there."""),
    new_code_cell("""def sgd(lr, steps):
    return optax.sgd(optax.cosine_decay_schedule(lr, steps), momentum=0.9)


def fine_tuned(epochs):
    model = ss.build(net, backbone.input_spec, seed=SEED)
    ss.copy_weights(backbone, model, skip="fc", strict=True)
    ss.freeze(model, range(len(model) - 1))
    head_epochs = 1
    head = ss.fit(model, batches, loss=ss.losses.cross_entropy, progress=False, epochs=head_epochs,
                  optimizer=sgd(0.05, head_epochs * len(batches)))
    ss.unfreeze(model)
    labels = ss.param_labels(model, {"fc": "head"}, default="backbone")
    rest = (epochs - head_epochs) * len(batches)
    optimizer = optax.multi_transform({"head": sgd(0.05, rest), "backbone": sgd(0.05, rest)}, labels)
    tuned = ss.fit(model, batches, loss=ss.losses.cross_entropy, progress=False,
                   epochs=epochs - head_epochs, optimizer=optimizer)
    return model, head["loss"] + tuned["loss"]


def from_scratch(epochs):
    model = ss.build(net, backbone.input_spec, seed=SEED)
    history = ss.fit(model, batches, loss=ss.losses.cross_entropy, progress=False, epochs=epochs,
                     optimizer=sgd(0.05, epochs * len(batches)))
    return model, history["loss"]"""),
    new_markdown_cell("""## Pretrained against scratch, for as many steps

The same network (`resnet_small(2, width=32)`), the same photos, augmentation and number of
steps; each model is tested once, at the end, on all the test photos."""),
    new_code_cell("""results, curves = {}, {}
for epochs in BUDGETS:
    for name, train_it in (("pretrained", fine_tuned), ("scratch", from_scratch)):
        model, curves[name, epochs] = train_it(epochs)
        results[name, epochs] = ss.evaluate(model, test_batches, metrics=[ss.metrics.accuracy])["accuracy"]
    print(f"{epochs * len(batches):4d} steps: pretrained {results['pretrained', epochs]:.3f}, "
          f"scratch {results['scratch', epochs]:.3f}")"""),
    new_code_cell("""longest = BUDGETS[-1]
fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3))
a.plot(curves["pretrained", longest], label="pretrained (head, then all)")
a.plot(curves["scratch", longest], label="from scratch")
a.set_xlabel("epoch")
a.set_ylabel("training loss")
a.legend()
x = np.arange(len(BUDGETS))
b.bar(x - 0.2, [results["pretrained", e] for e in BUDGETS], 0.4, label="pretrained")
b.bar(x + 0.2, [results["scratch", e] for e in BUDGETS], 0.4, label="scratch")
b.set_xticks(x, [f"{e * len(batches)} steps" for e in BUDGETS])
b.axhline(0.5, color="grey", ls="--", lw=0.8)
b.set_ylim(0, 1)
b.set_ylabel(f"test accuracy ({len(test)} photos)")
b.legend()
fig.tight_layout()
plt.show()"""),
    new_markdown_cell("""## Weights from PyTorch

`resnet.resnet18()` has torchvision's layer layout, and `resnet.load_torchvision(model, path)`
loads a torchvision `state_dict` (`.pt` with `torch.load(weights_only=True)`, or
`.safetensors` without PyTorch), converting OIHW kernels to HWIO and copying BatchNorm
statistics; `tests/unit/models/test_resnet.py` checks its logits against PyTorch's on the same weights.
The head swap above works the same way on it: `resnet18()[0][:-1] >> L.Linear(n)`."""),
]

MODELS_AS_FUNCTIONS = [
    new_markdown_cell("""# Models as functions A => B: predict, ship, monitor, retrain

A trained network is a function from photos to labels, and a piece of software: it needs a
version, tests, a deployment and a watch on the world it runs in. This notebook takes a
model of the talk's logo task through that life:

1. **train** a small CNN on the logo-in-the-wild photos (`models/logo.py`);
2. wrap it in a **`Predictor`**: an encoder (photo to tensor, exactly the training
   preprocessing), the model, a decoder (scores to `Prediction(label, confidence)`);
3. **save** it as a versioned artifact (JSON architecture, safetensors weights, hashes),
   describe it with `shapesafe info`, predict with `shapesafe predict`, **load** it back;
4. **export** it to StableHLO and run it without the model's Python code;
5. **monitor** it: a drift monitor built from the training photos flags darker, brighter or
   blurred photos and stays quiet on fresh ones; an accuracy check on fresh labelled photos
   compares with the accuracy recorded in the artifact;
6. **retrain** the loaded artifact on photos of the new world and save version 2.

The outputs below come from a full run (1,000 training photos at 64 x 64, 10 epochs; a
minute or two on 2 CPU cores). CI runs this notebook with `SHAPESAFE_NOTEBOOK_QUICK=1`
(200 photos at 32 x 32, 2 epochs) to check that every cell works; its numbers mean nothing."""),
    new_code_cell("""import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import optax
from PIL import Image, ImageEnhance, ImageFilter

import shapesafe as ss
from shapesafe.models import logo, talk
from shapesafe import layers as L
from shapesafe.data import image_folder
from shapesafe.monitor import DriftMonitor, check_accuracy

QUICK = os.environ.get("SHAPESAFE_NOTEBOOK_QUICK") == "1"  # CI: a tiny setting
N, FRESH, SIZE, EPOCHS = (200, 64, 32, 2) if QUICK else (1000, 200, 64, 10)
work = Path(tempfile.mkdtemp())
print(f"{N} training photos and {FRESH} fresh ones at {SIZE} x {SIZE}; {EPOCHS} epochs")"""),
    new_markdown_cell("""## 1. Train

Photos in class folders (`logo/`, `no_logo/`), read back as a typed dataset, split 80 / 20.
The network is a small two-convolution CNN (`notebooks/01_logo_classifier.ipynb` grows the
talk's networks step by step); the test accuracy is what the artifact will record."""),
    new_code_cell("""ds = image_folder(logo.generate(work / "photos", n=N, seed=0, size=SIZE), size=(SIZE, SIZE)).cache()
train, test = ds.split(0.8, seed=0)
net = (L.Rescale(1 / 255) >> L.Conv2D(16, (3, 3)) >> L.ReLU() >> L.MaxPool((2, 2))
       >> L.Conv2D(16, (3, 3)) >> L.ReLU() >> L.MaxPool((2, 2))
       >> L.Flatten() >> L.Linear(32) >> L.ReLU() >> L.Linear(2))
model = ss.build(net, talk.image_spec(SIZE), seed=0)
history = ss.fit(model, train.shuffle(seed=0).batch(32), loss=ss.losses.cross_entropy, optimizer=optax.adam(3e-3),
                 epochs=EPOCHS, eval_data=test.batch(64), metrics=[ss.metrics.accuracy], progress=False)
accuracy = round(float(history["eval_accuracy"][-1]), 4)  # as recorded in the artifact
print(f"{ss.summary(model).trainable_params:,} parameters, test accuracy {accuracy:.3f}")"""),
    new_markdown_cell("""## 2. A predictor: photo => Prediction

`encoders.Image(size=...)` runs the very code `image_folder` used on the training photos
(decode, EXIF rotation, RGB, resize), so what the model sees in serving is what it saw in
training. The predictor checks at construction that encoder, model and decoder fit together,
and its type, `Predictor[ImageInput, Prediction]`, is what static checkers see."""),
    new_code_cell("""clf = ss.Predictor(model, encoder=ss.encoders.Image(size=(SIZE, SIZE)),
                   decoder=ss.decoders.Labels(ds.class_names))
clf"""),
    new_markdown_cell("""Photos it has never seen: a new seed of the generator, same world."""),
    new_code_cell("""fresh = logo.generate(work / "fresh", n=FRESH, seed=1, size=SIZE)
files = sorted(fresh.rglob("*.jpg"))
labels = [f.parent.name for f in files]
shown = files[::max(1, len(files) // 8)][:8]
predictions = clf(shown)  # a list in, a list out; one path in, one Prediction out


def show(images, predictions, truths, title):
    fig, axes = plt.subplots(1, len(images), figsize=(2 * len(images), 2.5))
    for ax, image, p, truth in zip(axes, images, predictions, truths, strict=True):
        ax.imshow(image if not isinstance(image, Path) else Image.open(image))
        ax.set_title(f"{p.label}\\n{p.confidence:.2f}", fontsize=9, color="green" if p.label == truth else "red")
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()


show(shown, predictions, [f.parent.name for f in shown], "predictions on fresh photos (green: right)")
predictions[0]"""),
    new_markdown_cell("""The same photo as a path, as the file's bytes, as a Pillow image or as a decoded array
gives the same prediction. What cannot be read is an `InputError` naming the input."""),
    new_code_cell("""photo = shown[0]
same = [clf(photo), clf(photo.read_bytes()), clf(Image.open(photo)), clf(np.asarray(Image.open(photo)))]
print(same)
(work / "notes.txt").write_text("not a photo")
try:
    clf([photo, work / "notes.txt"])
except ss.InputError as error:
    print(f"InputError: {error}")"""),
    new_markdown_cell("""## 3. Save, describe, load

The drift monitor (section 5) is built now, from the training photos, and travels with the
artifact. An artifact is a directory of plain files: the architecture as JSON (never code),
the weights in safetensors (streamed: never held twice in memory), the encoder and decoder,
the metrics, the versions that wrote it, and the SHA-256 of every file. The write is atomic."""),
    new_code_cell("""training_images = np.stack([element["image"] for element in train])
monitor = DriftMonitor.from_data(clf, training_images)
artifact = ss.save(clf, work / "artifacts" / "logo" / "1", metrics={"accuracy": accuracy}, monitor=monitor)
for f in sorted(artifact.iterdir()):
    print(f"{f.name:22} {f.stat().st_size:>9,} bytes")"""),
    new_markdown_cell(
        """The command line reads the same artifact (`shell` runs a command as a terminal would)."""
    ),
    new_code_cell("""import subprocess


def shell(command):
    done = subprocess.run(command.split(), capture_output=True, text=True)
    print(f"$ {command}\\n{done.stdout}{done.stderr}", end="")


shell(f"shapesafe info {artifact}")"""),
    new_code_cell(
        """shell(f"shapesafe predict {artifact} {shown[0]} {shown[1]} {work / 'notes.txt'}")"""
    ),
    new_markdown_cell("""Loading verifies every hash and the format version, rebuilds the model from the JSON
with `ss.build` (no pickle, nothing executed), checks every weight's shape, and gives back
the predictor, in evaluation mode, with its version and metrics."""),
    new_code_cell("""loaded = ss.load(artifact)
print(loaded.version, loaded.metrics)
np.array_equal(loaded.outputs(files), clf.outputs(files))"""),
    new_markdown_cell("""## 4. Export: StableHLO, served without the model's code

`ss.export` lowers the evaluation-mode forward pass with `jax.export`, for every batch size
(a symbolic batch dimension), here for the CPU and for CUDA (lowering needs no GPU). The
directory holds the StableHLO, the weights (`.npz`, read without pickle) and a record of the
specs, the platforms and the jaxlib that wrote it. Reading it needs JAX and NumPy only."""),
    new_code_cell("""served_dir = ss.export(clf, work / "served" / "logo" / "1", platforms=("cpu", "cuda"))
served = ss.load_exported(served_dir)
print(served.model)
print("same outputs as the live model:", np.allclose(served.outputs(files), clf.outputs(files), atol=1e-5))
served(shown[:3])"""),
    new_markdown_cell("""## 5. Monitor: has the world changed?

The monitor recorded, on the training photos, each channel's mean brightness, its contrast,
the sharpness (mean difference between neighbouring pixels), and the share of each
predicted class. `check` scores a batch of new inputs against them: a statistic is flagged
when it is both significant (|z| > 5) and large (more than 0.25 training standard deviations),
the classes when their population stability index passes 0.25. Fresh photos of the same
world raise no flag:"""),
    new_code_cell("""monitor = DriftMonitor.load(artifact, loaded)
monitor.check(files)"""),
    new_markdown_cell(
        """The same photos, darker (an evening camera), brighter, or out of focus:"""
    ),
    new_code_cell("""def changed(change):
    return [change(Image.open(f).convert("RGB")) for f in files]


worlds = {"darker": changed(lambda im: ImageEnhance.Brightness(im).enhance(0.5)),
          "brighter": changed(lambda im: ImageEnhance.Brightness(im).enhance(1.6)),
          "blurred": changed(lambda im: im.filter(ImageFilter.GaussianBlur(1.2)))}
fig, axes = plt.subplots(1, 4, figsize=(8, 2.4))
for ax, (name, images) in zip(axes, [("fresh", [Image.open(files[0])]), *worlds.items()], strict=True):
    ax.imshow(images[0])
    ax.set_title(name, fontsize=10)
    ax.axis("off")
fig.tight_layout()
for name, images in worlds.items():
    report = monitor.check(images)
    print(f"{name:9} drift={report.drift}")
    for reason in report.reasons:
        print("   ", reason)"""),
    new_markdown_cell("""Drift in the inputs is a warning; what matters is the accuracy. With fresh *labelled*
photos, `check_accuracy` compares it with the accuracy recorded in the artifact (a drop of
more than 0.05 counts as degraded):"""),
    new_code_cell("""print("fresh    ", check_accuracy(loaded, files, labels))
for name, images in worlds.items():
    print(f"{name:9}", check_accuracy(loaded, images, labels))"""),
    new_markdown_cell("""## 6. Retrain the loaded artifact on the new world, save version 2

The world got darker. Label some new photos of it (another seed), fine-tune the loaded
model on them, check it on the darker fresh photos, and save version 2 with a monitor whose
reference is the new world. Version 1 stays as it was."""),
    new_code_cell("""new_files = sorted(logo.generate(work / "new", n=FRESH, seed=2, size=SIZE).rglob("*.jpg"))
x = loaded.encode([ImageEnhance.Brightness(Image.open(f).convert("RGB")).enhance(0.5) for f in new_files])
y = np.array([ds.class_names.index(f.parent.name) for f in new_files], np.int32)
before = check_accuracy(loaded, worlds["darker"], labels)
ss.fit(loaded.model, [(x[i:i + 32], y[i:i + 32]) for i in range(0, len(x), 32)], loss=ss.losses.cross_entropy,
       optimizer=optax.adam(1e-3), epochs=4, progress=False)
after = check_accuracy(loaded, worlds["darker"], labels)
print("darker photos, before:", before)
print("darker photos, after: ", after)
v2 = ss.save(loaded, work / "artifacts" / "logo" / "2", metrics={"accuracy": after.accuracy},
             monitor=DriftMonitor.from_data(loaded, x))
print(ss.load(v2).version, ss.load(v2).metrics, "| version 1:", ss.load(artifact).metrics)
DriftMonitor.load(v2).check(worlds["darker"])"""),
]

NOTEBOOKS = {
    "01_logo_classifier.ipynb": LOGO_CLASSIFIER,
    "02_shape_errors.ipynb": SHAPE_ERRORS,
    "04_sequences.ipynb": SEQUENCES,
    "06_digits_walkthrough.ipynb": WALKTHROUGH,
    "03_transfer_learning.ipynb": TRANSFER,
    "05_models_as_functions.ipynb": MODELS_AS_FUNCTIONS,
}


def main(argv: list[str] | None = None) -> None:
    """Write the notebooks named in ``argv`` (default: every one) and run each top to bottom,
    so it is committed with real outputs: ``python notebooks/make_notebooks.py 01_logo_classifier.ipynb``."""
    import sys
    import tempfile

    from nbclient import NotebookClient

    names = list(sys.argv[1:] if argv is None else argv) or list(NOTEBOOKS)
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        raise SystemExit(f"unknown notebook(s) {unknown}; known: {sorted(NOTEBOOKS)}")
    for name in names:
        cells = NOTEBOOKS[name]
        nb = new_notebook(
            cells=cells,
            metadata={
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"},
            },
        )
        nbformat.validate(nb)
        with tempfile.TemporaryDirectory() as work:
            NotebookClient(
                nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": work}}
            ).execute()
        nbformat.write(nb, HERE / name)
        print("wrote", HERE / name, "with outputs")


if __name__ == "__main__":
    main()
