"""Peer model servers (MLServer, KServe) run beside deploy/serve/__main__.py by `make bench-serve`."""
