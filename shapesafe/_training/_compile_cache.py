"""Opt-in persistence of XLA's compiled programs across processes (JAX's compilation cache)."""

import os
from pathlib import Path

import jax


def compilation_cache(directory: "str | os.PathLike[str] | None" = None) -> Path:
    """Keep compiled programs in ``directory``, so a later process skips their compilation.

    This turns on JAX's persistent compilation cache for every program of this process (the
    training and evaluation steps of ``fit``, ``ss.build``'s initialiser, ``predict``): a
    second run of the same script on the same machine, JAX version and shapes loads them
    instead of compiling. Call it before the first compilation. Entries are keyed by the
    program, the devices and the versions, so a changed model compiles anew; delete the
    folder to reclaim its space. The same is available without code through JAX's own
    ``JAX_COMPILATION_CACHE_DIR`` environment variable.

    Args:
        directory: where the cache lives; by default ``~/.cache/shapesafe/xla``.

    Returns:
        The cache's folder (created when missing).

    Example:
        >>> import tempfile
        >>> import shapesafe as ss
        >>> folder = ss.compilation_cache(tempfile.mkdtemp())
        >>> folder.is_dir()
        True
    """
    path = Path(directory) if directory is not None else Path.home() / ".cache/shapesafe/xla"
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    # cache every program: a small model's steps compile in well under JAX's default 1 s
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
