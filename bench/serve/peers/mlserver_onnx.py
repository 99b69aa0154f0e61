"""A minimal MLServer runtime for our ONNX model: what a user would write to serve model.onnx with
MLServer, benchmarked beside deploy/serve/__main__.py by `make bench-serve`.

It runs in the MLServer venv (.peers/mlserver, see peers.mk), never in .venv. launch.py writes the
model settings that point at it and starts the server:

    <folder>/settings.json: {"http_port": ..., "grpc_port": ..., "metrics_port": ...}
    <folder>/<model_name>/model-settings.json:
        {"name": "<model_name>", "implementation": "mlserver_onnx.OnnxModel",
         "parameters": {"uri": "/abs/path/model.onnx"}}
    PYTHONPATH=bench/serve/peers .peers/mlserver/bin/mlserver start <folder>

MLServer's REST API takes JSON only (Content-Type application/json or none): a request with
binary tensor data (tritonclient's default) is refused with 422. Its gRPC API takes
raw_input_contents (tritonclient.grpc's default).

With adaptive batching (max_batch_size / max_batch_time in the model settings) MLServer merges
requests along the first axis before predict() and splits the response, so predict() stays the same.
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    async def load(self) -> bool:
        # get_model_uri resolves parameters.uri (relative paths against model-settings.json).
        uri = await get_model_uri(self._settings)
        # Default session options, CPU only: the configuration a user gets without tuning.
        self._session = ort.InferenceSession(uri, providers=["CPUExecutionProvider"])
        self._input_name = self._session.get_inputs()[0].name
        self._output_name = self._session.get_outputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        image = NumpyCodec.decode_input(payload.inputs[0])
        (probs,) = self._session.run([self._output_name], {self._input_name: image})
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(self._output_name, probs)],
        )
