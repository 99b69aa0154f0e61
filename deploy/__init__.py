"""Everything that runs after export, in three rooms: `build` (the bundle), `predict` (mlp-predict)
and `serve` (mlp-serve), and what they share: a verified bundle loaded for inference (`bundle`),
the predictor's exit codes (`errors`) and the batching limits (`batch_policy`).

Nothing here imports torch, torchvision or the training code: only the torch-free `handoff`, and a
room never imports another room (tests/test_imports.py checks every import; tests/test_deploy.py
imports each module where importing torch fails).
"""
