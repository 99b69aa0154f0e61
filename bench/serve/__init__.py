"""`make bench-serve`: mlp-serve under load beside MLServer and KServe, its robustness runs, serve.md."""
