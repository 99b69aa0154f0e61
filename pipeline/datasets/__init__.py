"""Datasets the pipeline trains on, one module each exposing `SPEC` (pipeline.data.DatasetSpec).
Importing this package loads neither torch nor any dataset; the torch-free file readers the
datasets use (IDX, Otto's CSV) live in pipeline.handoff, shared with the deployed predictor."""
