"""The server (`mlp-serve`, `make serve`): a bundle behind the Open Inference Protocol over HTTP and
gRPC, with dynamic batching, Triton's statistics, Prometheus metrics and the bundle's page."""
