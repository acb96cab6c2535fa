"""Typed datasets: every stage knows its element spec, and wrong compositions fail when built.

Design
------
**Specs.** A dataset's ``spec`` is an ``ElementSpec``: a PyTree (usually a dict) of jaxtyping
annotations, e.g. ``{"image": UInt8[np.ndarray, "250 250 3"], "label": Int32[np.ndarray, ""]}``.
Elements live on the host as NumPy arrays, so the annotations say ``np.ndarray`` (that is what
is checked at run time); after ``prefetch(sharding=...)`` they say ``jax.Array``. A model's
input spec says ``Array``; ``compatible``/``check_compatible`` compare dtype and shape only, so
``UInt8[np.ndarray, "batch 250 250 3"]`` fits ``UInt8[Array, "batch 250 250 3"]``.
``ds.spec`` prints as the code you would write; ``ds.spec.tree`` is the raw PyTree.

**Stages.** ``from_arrays``, ``from_generator(fn, spec)``, ``from_source`` (``__len__`` and
``__getitem__``) and ``image_folder`` make datasets; ``map``, ``filter``, ``flat_map``,
``shuffle``, ``batch``, ``prefetch``, ``repeat``, ``take``, ``skip``, ``cache``, ``split``,
``zip`` and ``concatenate`` derive new ones. Each derives its spec from its parent's when it is
built and refuses a wrong composition then, naming the stage (``stage 3, map(augment)``):
batching twice, a ``map`` whose function expects ``Float`` where the elements are ``UInt8``,
a parameter naming a key the elements lack. ``map``'s output spec comes from the function's
return annotation (named sizes are bound from the input, ``"{height}"`` from its keyword
arguments), or from ``spec=``. At run time every element a user function or a source produces
is checked against the spec; a mismatch is a ``ShapeError`` naming the stage and where the
element came from (the image file, the example index), never a failure deep inside JAX.

**Batches and the mask.** ``batch(n)`` prepends a ``batch`` dimension to every leaf and adds
``"mask": Bool[np.ndarray, " batch"]`` to dict elements (a last part for tuple elements; a
single array becomes ``(x, mask)``). A short last batch is padded with zeros up to ``n`` so a
jitted step compiles once; the mask is true for real examples, so metrics count each exactly
once. ``drop_remainder=True`` drops the short batch instead. An image that turns out to be
unreadable under ``on_error="skip"`` is a masked slot of its batch.

**Iteration contract (used by ``shapesafe.fit``).**

- ``ds.epoch(e)`` returns an iterator over epoch ``e``; iteration is deterministic: shuffles
  are seeded by ``(seed, e)``, random transforms by ``(seed, e, index)``. ``iter(ds)`` is
  ``ds.epoch(0)``.
- ``it.get_state()`` is a JSON-serialisable dict ``{"epoch", "position", "pipeline"}``;
  ``ds.epoch(state=s)`` (or ``it.set_state(s)``) continues right after the last element
  yielded before the state was taken: nothing lost, nothing repeated. On random-access
  pipelines the position is an index (instant); a stream stage (a generator, a buffer
  shuffle) replays from the start of the epoch to get there.
- ``ds.epoch(e, start=k)`` skips ``k`` elements (instant on random-access pipelines).
- ``len(ds)`` where it is known (``TypeError`` where a filter or generator makes it unknown).

**Parallelism.** Random-access pipelines (a source with ``__getitem__``, then ``map``,
``shuffle``, ``batch``, ``take``, ``skip``, ``split``, ``cache``) compute element ``i`` as one
function call, so a pool of threads (``image_folder(workers=...)``, ``map(fn, workers=n)``)
computes consecutive elements in parallel and yields them in order. Threads suffice because
Pillow's decoders and NumPy release the GIL. For a pure-Python function that holds the GIL,
``map(fn, workers=n, processes=True)`` runs it in ``n`` worker processes (started with
``spawn``; ``fn`` must be importable, and a script needs the ``if __name__ == "__main__":``
guard); order is kept the same way. ``prefetch(n)`` overlaps the whole pipeline with the
training step in a background thread, and with ``sharding=`` also the host-to-device copy.

**Caching.** ``cache()`` keeps the elements of the first pass in memory; ``cache(path)``
writes them to ``.npy`` files under ``path`` that later epochs and later processes read
(memory-mapped), renamed into place only when complete and tied to a fingerprint of the
pipeline upstream, so a partial or outdated cache is never read. For multi-epoch training
cache right after decoding, before the random transforms:
``image_folder(...).cache().shuffle(seed=0).map(random_flip, seed=0).batch(32).prefetch(2)``
(``benchmarks/data_wait.py``: the decoding then no longer competes with the training step
after the first epoch).

**Run-time checks.** Every element a source or a user function produces is checked against
the spec: a quick comparison of array type, dtype and shape (a few µs, measured against a
decode of about 2 ms) and the full explanation only when that fails.

**Why not grain.** Grain's ordered parallel map, checkpointable iterator state and index
shuffles are the small typed core above, which also carries the specs and the file each
element came from; a grain ``RandomAccessDataSource`` works unchanged with ``from_source``.
The measurements behind this choice are in ``benchmarks/README.md`` ("Why not grain").

Bad image files: see ``image_folder``. Typed transforms: ``normalise``, ``standardise`` with
``channel_stats``, ``random_crop``, ``random_flip``, ``jitter``.
"""

# the stage modules register the chaining methods' stages (Dataset.map, .batch, ...)
from . import _batch, _cache, _combine, _prefetch, _select, _stages  # noqa: F401
from ._dataset import Dataset as Dataset
from ._dataset import DatasetIterator as DatasetIterator
from ._element_spec import ElementSpec as ElementSpec
from ._element_spec import check_compatible as check_compatible
from ._element_spec import compatible as compatible
from ._image_folder import DataError as DataError
from ._image_folder import ImageFileError as ImageFileError
from ._image_folder import Report as Report
from ._image_folder import image_folder as image_folder
from ._image_folder import load_image as load_image
from ._sources import from_arrays as from_arrays
from ._sources import from_generator as from_generator
from ._sources import from_source as from_source
from ._transforms import ChannelStats as ChannelStats
from ._transforms import channel_stats as channel_stats
from ._transforms import jitter as jitter
from ._transforms import normalise as normalise
from ._transforms import random_crop as random_crop
from ._transforms import random_flip as random_flip
from ._transforms import standardise as standardise
