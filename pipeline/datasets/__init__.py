"""Datasets the pipeline trains on. Importing this package loads neither torch nor any dataset:
the torch-free readers (e.g. `otto_csv`) are shared with code that must run without torch."""
