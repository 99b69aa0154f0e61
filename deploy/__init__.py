"""Everything that runs after export: the bundle, the predictor, the Open Inference Protocol server.

Nothing here imports torch, torchvision or the training code: from `pipeline` it imports only the
torch-free hand-off package, `pipeline.handoff` (tests/test_imports.py checks every import, and
tests/test_deploy.py imports each module where importing torch fails).
"""
