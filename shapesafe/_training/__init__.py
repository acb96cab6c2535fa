"""Training: the fast jitted step over a split model, and the short loop around it.

- ``_engine``: ``TrainState`` and ``Engine``, the pure ``jax.jit`` train/eval/predict steps
  over the model's split state (donated buffers; several steps under ``lax.scan``).
- ``_batches``: the one adapter from what a dataset yields to ``(inputs, targets, mask)``.
- ``_data_checks``: data against the model before and during training (specs, labels, NaN).
- ``_fit``: ``fit``/``evaluate``/``predict``, the loop (forward, loss, backpropagation,
  update, repeat) with its callbacks; ``_callbacks``, ``_history``, ``_progress``.
- ``_losses``, ``_metrics``: pure, annotated functions and metric objects.
- ``_freeze``, ``_transfer``, ``_torch_weights``, ``_summary``: working with built models.
- ``_memory``: the per-device memory plan ``summary`` shows for a mesh and a sharding plan
  (``shapesafe._sharding``, below ``layers``, resolves the plan itself).

May import the spec kernel, layers, data and persistence; never serving, artifacts or the zoo.
"""
