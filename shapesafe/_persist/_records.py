"""Versioned JSON records: written strictly (no NaN, sorted where it matters), read and verified
in one place, refused with the file named."""

import json
from pathlib import Path
from typing import Any


class RecordError(Exception):
    """A record that cannot be read; ``newer`` when only a newer shapesafe can read it."""

    def __init__(self, message: str, *, newer: bool = False):
        super().__init__(message)
        self.newer = newer


def dumps(data: Any) -> bytes:
    """Strict JSON (``TypeError``/``ValueError`` for what JSON cannot hold), one field a line."""
    return (json.dumps(data, indent=1, allow_nan=False) + "\n").encode()


def read_record(
    file: Path, *, fmt: str, what: str, newest: int, version_key: str = "format_version"
) -> dict[str, Any]:
    """Read ``file`` as a record of format ``fmt`` whose version this shapesafe reads.

    Args:
        file: the record's path.
        fmt: the expected ``"format"`` field, e.g. ``"shapesafe.artifact"``.
        what: the record's noun for messages (``"artifact"``).
        newest: the newest version this code reads.
        version_key: the field holding the version.

    Raises:
        RecordError: missing, unreadable, not this format, a version that is not a positive
            integer, or a newer version (``newer=True``); the message names the file.
    """
    try:
        record = json.loads(file.read_text())
    except FileNotFoundError:
        raise RecordError(
            f"{file.parent} is not a shapesafe {what}: {file.name} is missing."
        ) from None
    except (OSError, ValueError) as e:
        raise RecordError(f"{file} is unreadable: {e}") from None
    except RecursionError:
        raise RecordError(f"{file} is unreadable: it nests too deeply.") from None
    if not isinstance(record, dict) or record.get("format") != fmt:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise RecordError(
            f"{file} is not a shapesafe {what} record (format {found!r}, expected {fmt!r})."
        )
    version = record.get(version_key)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RecordError(f"{file}: the format version {version!r} is not a positive integer.")
    if version > newest:
        versions = record.get("versions")
        written = versions.get("shapesafe", "?") if isinstance(versions, dict) else "?"
        raise RecordError(
            f"{file}: the {what} has format version {version!r}, newer than this shapesafe reads "
            f"({newest}); it was written by shapesafe {written}.",
            newer=True,
        )
    return record
