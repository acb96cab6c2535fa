"""Test settings: strict promotion so a silent broadcast or upcast fails a test.

jaxtyping+beartype checking of ``shapesafe`` and ``models`` is on through the
``--jaxtyping-packages`` option in ``pyproject.toml``.
"""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
