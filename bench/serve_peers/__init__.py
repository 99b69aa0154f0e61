"""Peer model servers (MLServer, KServe) run beside deploy/server.py by `make bench-serve`."""
