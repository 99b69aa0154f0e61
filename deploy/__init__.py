"""Everything that runs after export: the bundle, the predictor, the Open Inference Protocol server.

Nothing here imports torch, torchvision or the training code (tests/test_deploy_torch_free.py runs
it where importing torch fails); it shares only torch-free helpers (pipeline.errors, .atomic,
.manifest, .cli, .datasets.idx, .datasets.otto_csv), which the same test guards.
"""
