"""A minimal KServe Python model server for our ONNX model: what a user would write to serve
model.onnx with `kserve.ModelServer`, benchmarked beside deploy/serve/__main__.py by `make bench-serve`.

It runs in the KServe venv (.peers/kserve, see peers.mk), never in .venv; launch.py starts it:

    .peers/kserve/bin/python bench/serve/peers/kserve_onnx.py --model-path artifacts/model.onnx \
        --model-name mnist --http-port 8080 --grpc-port 8081

It speaks the Open Inference Protocol (V2) over REST and gRPC. REST takes binary tensor data
(Inference-Header-Content-Length) or JSON, but JSON only with Content-Type: application/json: any
other or none is read as binary and refused (400). The server keeps KServe's defaults: one uvicorn
worker, gRPC on, and four log lines per request (access, latency, two timings).
"""

from __future__ import annotations

import argparse

import kserve
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse
from kserve.utils.numpy_codec import from_np_dtype
from kserve.utils.utils import generate_uuid


class OnnxModel(kserve.Model):
    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.path = path

    def load(self) -> bool:
        # Default session options, CPU only: the configuration a user gets without tuning.
        self.session = ort.InferenceSession(self.path, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        image = payload.inputs[0].as_numpy()
        (probs,) = self.session.run([self.output_name], {self.input_name: image})
        output = InferOutput(name=self.output_name, shape=list(probs.shape), datatype=from_np_dtype(probs.dtype))
        # Binary output only when the request asked for it (binary_data_output, or per output), as
        # kserve's own runtimes do (kserve.utils.utils.get_predict_response).
        output.set_data_from_numpy(probs, binary_data=payload.use_binary_outputs)
        return InferResponse(
            response_id=payload.id or generate_uuid(),
            model_name=self.name,
            infer_outputs=[output],
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    # parse_known_args: kserve.model_server parses sys.argv too (for its own --flags) when imported.
    args, _ = parser.parse_known_args()
    model = OnnxModel(args.model_name, args.model_path)
    model.load()
    kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=1).start([model])


if __name__ == "__main__":
    main()
