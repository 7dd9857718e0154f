"""Clustering search, persona naming, the MLflow pyfunc and persona profiles."""
