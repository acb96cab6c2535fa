"""Write the notebooks of this folder from the cells below, executed, with their outputs.

Edit the cells here, then run ``python notebooks/make_notebooks.py``; commit both this
script and the ``.ipynb`` files. ``tests/test_notebooks.py`` executes every notebook again.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

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
from models import talk
from shapesafe import layers as L
from shapesafe.data import image_folder

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

Forget the `Cast` and the first `Linear` receives `uint8` pixels. The error names the layer,
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
from models import rnn
from shapesafe import layers as L"""),
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
    new_markdown_cell("""The same recipe with a GRU (`rnn.train_digits` is the cell above in one call):"""),
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
from models import talk
from shapesafe import layers as L

IMAGES = UInt8[Array, "batch 64 64 3"]


def show(make):
    try:
        make()
    except Exception as e:
        print(f"{type(e).__module__}.{type(e).__name__}: {e}")
    else:
        print("no error")"""),
    new_markdown_cell("""## 1. Missing `Cast`: uint8 pixels into a dense layer"""),
    new_code_cell("""show(lambda: ss.build(L.Flatten() >> L.Linear(64) >> L.ReLU() >> L.Linear(2), IMAGES))"""),
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
    new_code_cell("""show(lambda: ss.losses.binary_cross_entropy(jnp.zeros((8, 1)), jnp.zeros((8,))))"""),
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

NOTEBOOKS = {"01_walkthrough.ipynb": WALKTHROUGH, "02_shape_errors.ipynb": SHAPE_ERRORS,
             "04_sequences.ipynb": SEQUENCES}


def main() -> None:
    """Write every notebook and run it top to bottom, so it is committed with real outputs."""
    import tempfile

    from nbclient import NotebookClient

    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        })
        nbformat.validate(nb)
        with tempfile.TemporaryDirectory() as work:
            NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": work}}).execute()
        nbformat.write(nb, HERE / name)
        print("wrote", HERE / name, "with outputs")


if __name__ == "__main__":
    main()
