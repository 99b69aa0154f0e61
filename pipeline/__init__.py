"""Data, model and training for the MNIST pipeline."""
