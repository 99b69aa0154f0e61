"""The predictor (`mlp-predict`, `python -m deploy.predict`): files in, classes out, from a bundle."""
