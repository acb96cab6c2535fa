"""Serving: a trained model as a function A => B (``Predictor`` with an encoder and a
decoder) and its monitor. Above training; below artifacts, which save and load predictors."""
