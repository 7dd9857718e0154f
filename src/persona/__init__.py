"""Customer persona segmentation: one package for data, model, pipelines and services."""

__version__ = "0.1.0"
