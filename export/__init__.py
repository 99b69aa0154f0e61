"""Export stage: the softmax head, TorchScript and ONNX exporters, runtimes and the parity gate."""
