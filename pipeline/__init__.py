"""The training stage (data, model, recipes, the training loop) and, in `handoff`, the
torch-free hand-off every stage shares."""
