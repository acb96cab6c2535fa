"""Persistence: the one place that writes and reads files.

- ``_atomic``: write aside, fsync, swap a directory in with two renames, ``recover`` an
  interrupted swap, refuse symlinks out of a directory.
- ``_records``: versioned JSON records (strict writing; reading that verifies the format and
  its version and names the file).
- ``_safetensors``: weights streamed tensor by tensor in the safetensors format.
- ``_checkpoint``: training checkpoints on top of the three.

Artifacts (``shapesafe._artifact``) and exports (``shapesafe._export``) sit above serving and
use only the names re-exported here.
"""

from . import _safetensors as safetensors  # noqa: F401  (the module: read, write, Damaged)
from ._atomic import fsync_dir as fsync_dir
from ._atomic import links_out as links_out
from ._atomic import recover as recover
from ._atomic import replace_dir as replace_dir
from ._atomic import write_file as write_file
from ._checkpoint import load_latest as load_latest
from ._checkpoint import model_fingerprint as model_fingerprint
from ._checkpoint import save_checkpoint as save_checkpoint
from ._records import RecordError as RecordError
from ._records import dumps as dumps
from ._records import read_record as read_record
from ._safetensors import NATIVE as NATIVE
from ._safetensors import is_key as is_key
