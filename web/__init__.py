"""The bundle's model in the browser: `make web` builds a static page (ONNX Runtime Web) into the bundle."""
