"""The spec kernel: jaxtyping annotations parsed, compared and explained in one place.

Layout (each module imports only those above it):

- ``_parse``: an annotation's public attributes (``dtype``, ``dtypes``, ``array_type``,
  ``dim_str``) into an ``ArraySpec``; the dimension grammar; dtype tables and words.
- ``_format``: the one formatter (annotation as written, the short ``UInt8[batch, 3]`` form).
- ``_compare``: ``compare(annotation, value)`` and ``compare_specs(actual, expected)`` give a
  structured ``Mismatch`` (leaf, axis, expected, got, bindings), rendered by its methods.
- ``_bind``: dimension names bound across annotations (a loss's output pattern to the
  model's output, then substituted into its target annotation).
- ``_json``: specs as the JSON that artifacts, exports and predictors store.
- ``_symbolic``: ``TensorSpec``, the ``jax.export`` symbolic form ``build`` propagates.
- ``_trace``: the trace-time decorators (``checked``, ``checked_function``); jaxtyping and
  beartype decide whether a call fits, ``compare`` says why it does not.

Build-time, trace-time and data checks all render their messages from ``Mismatch``.
"""

from ._bind import bind as bind
from ._bind import show as show
from ._bind import substitute as substitute
from ._bind import token_fits as token_fits
from ._bind import tokens as tokens
from ._compare import Mismatch as Mismatch
from ._compare import Problem as Problem
from ._compare import compare as compare
from ._compare import compare_spec_trees as compare_spec_trees
from ._compare import compare_specs as compare_specs
from ._compare import compare_tree as compare_tree
from ._compare import format_bindings as format_bindings
from ._compare import leaves_with_paths as leaves_with_paths
from ._format import describe_object as describe_object
from ._format import dim_string as dim_string
from ._format import format_annotation as format_annotation
from ._format import format_shape as format_shape
from ._format import format_short as format_short
from ._format import format_spec as format_spec
from ._format import format_value as format_value
from ._json import dtype_from_name as dtype_from_name
from ._json import spec_from_json as spec_from_json
from ._json import spec_text as spec_text
from ._json import spec_to_json as spec_to_json
from ._parse import DTYPE_TO_JAXTYPING as DTYPE_TO_JAXTYPING
from ._parse import ArraySpec as ArraySpec
from ._parse import Dim as Dim
from ._parse import annotation_for as annotation_for
from ._parse import annotation_of as annotation_of
from ._parse import default_dtype as default_dtype
from ._parse import dtype_kind as dtype_kind
from ._parse import dtype_names as dtype_names
from ._parse import dtype_words as dtype_words
from ._parse import is_annotation as is_annotation
from ._parse import make as make
from ._parse import parse as parse
from ._symbolic import TensorSpec as TensorSpec
from ._symbolic import needs_x64 as needs_x64
from ._symbolic import spec_from_annotation as spec_from_annotation
from ._symbolic import trace_origins as trace_origins
from ._trace import array_annotation as array_annotation
from ._trace import call_checked as call_checked
from ._trace import checked as checked
from ._trace import checked_function as checked_function
from ._trace import describe as describe
from ._trace import got_with_origins as got_with_origins
from ._trace import input_advice as input_advice
