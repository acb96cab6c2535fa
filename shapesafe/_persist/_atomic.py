"""Atomic files and directories: write aside, fsync, rename into place, recover a crash.

A directory is replaced in two renames (``target -> .old-<name>-*/<name>``, then
``.tmp-<name>-* -> target``). A process killed between them leaves no ``target`` but an intact
previous version aside; ``recover(target)`` puts it back, and removes the debris of writes that
were killed earlier (``.tmp-*`` and ``.old-*`` directories of that name). Every writer calls it
before writing and every reader before reading, so nothing written is ever lost to a kill.
"""

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

TMP = ".tmp-"
OLD = ".old-"


def fsync_dir(path: Path) -> None:
    """Make a directory's entries durable (POSIX; elsewhere directories cannot be opened)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    _at("writing")


def fresh_dir(directory: Path, stem: str) -> Path:
    """A new empty directory ``directory/<stem>-<random>``."""
    while True:
        path = directory / f"{stem}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _aside(target: Path) -> list[Path]:
    parent = target.parent
    if not parent.is_dir():
        return []
    return [c for c in parent.iterdir() if c.name.startswith(f"{OLD}{target.name}-") and c.is_dir()]


def recover(target: Path) -> None:
    """Finish or undo an interrupted ``replace_dir`` of ``target``.

    If ``target`` is missing and a previous version was set aside, it is moved back. Debris of
    killed writes (``.tmp-<name>-*``, emptied or superseded ``.old-<name>-*``) is removed.
    """
    parent = target.parent
    if not parent.is_dir():
        return
    for old in sorted(_aside(target), key=lambda p: p.stat().st_mtime, reverse=True):
        kept = old / target.name
        if not target.exists() and not target.is_symlink() and kept.exists():
            os.rename(kept, target)
            fsync_dir(parent)
        shutil.rmtree(old, ignore_errors=True)
    for child in parent.iterdir():
        if child.name.startswith(f"{TMP}{target.name}-") and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)


def replace_dir(target: Path, fill: Callable[[Path], None]) -> None:
    """Let ``fill(tmp)`` write a fresh directory, then swap it in for ``target``.

    Each rename is atomic; a failure (or ``KeyboardInterrupt``) puts the previous version back,
    and a kill between the renames is undone by ``recover`` on the next read or write.
    With ``SHAPESAFE_PAUSE_AT`` set to a boundary (``writing``: the first file written into
    the fresh directory, ``written``, ``aside``, ``swapped``) the process pauses there: the
    fault-injection tests kill it at that exact point.
    """
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    tmp = fresh_dir(parent, f"{TMP}{target.name}")
    old: Path | None = None
    try:
        fill(tmp)
        fsync_dir(tmp)
        _at("written")
        if target.exists():
            old = fresh_dir(parent, f"{OLD}{target.name}")
            os.rename(target, old / target.name)
            _at("aside")
        os.rename(tmp, target)
        fsync_dir(parent)
        _at("swapped")
    except BaseException:
        if old is not None and not target.exists():  # put the previous version back
            os.rename(old / target.name, target)
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _at(boundary: str) -> None:
    if os.environ.get("SHAPESAFE_PAUSE_AT") == boundary:  # fault injection: a test kills us here
        import time

        print(f"paused at {boundary}", flush=True)
        time.sleep(3600)


def links_out(root: Path) -> tuple[Path, str] | None:
    """The first symlink inside ``root`` whose target is outside it, and where it points."""
    real = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            entry = Path(dirpath) / name
            if entry.is_symlink():
                target = entry.resolve()
                if target != real and real not in target.parents:
                    return entry, os.readlink(entry)
    return None
