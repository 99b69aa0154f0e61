"""Datasets the pipeline trains on: `spec` (what every dataset is), `registry` (which there are),
and one module each exposing `SPEC` (mnist, otto; otto_synthetic writes a stand-in for Otto's
file). Importing this package loads neither torch nor any dataset; the torch-free file readers the
datasets use (IDX, Otto's CSV) live in `handoff`, shared with the deployed predictor."""
