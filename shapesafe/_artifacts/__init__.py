"""Artifacts: a model or predictor saved as a verified directory (``_artifact``), exported as
StableHLO (``_export``), blueprints and specs as JSON (``_serialize``). Built on
``shapesafe._persist``; above serving."""
