"""A Triton Inference Server model repository for one ONNX model, and its KServe manifest.

    triton/<model_name>/config.pbtxt     platform onnxruntime_onnx, dims and types from the graph
    triton/<model_name>/labels.txt       class names, one per line (Triton's classification extension)
    triton/<model_name>/1/model.onnx     the bundle's default variant, byte for byte, under the name
                                         Triton's ONNX Runtime backend loads (every variant has fp32's I/O)

The config is built and printed with the protobuf classes tritonclient ships
(`model_config_pb2.ModelConfig`, Triton's own schema), so a misspelt field fails here rather than
in Triton's logs; `read_config` parses a written file back with the same schema. Input and output
names, element types and per-sample dims come from the ONNX graph (`graph_tensors`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from deploy.batch_policy import BatchPolicy
from handoff.atomic import atomic_path
from handoff.errors import PipelineError

VERSION = "1"  # the repository's one model version folder
LABELS_FILE = "labels.txt"
# ONNX element type -> Triton data type (the ones an exported or quantised MLP can have).
TRITON_TYPES = {
    onnx.TensorProto.FLOAT: model_config_pb2.TYPE_FP32,
    onnx.TensorProto.FLOAT16: model_config_pb2.TYPE_FP16,
    onnx.TensorProto.BFLOAT16: model_config_pb2.TYPE_BF16,
    onnx.TensorProto.INT8: model_config_pb2.TYPE_INT8,
    onnx.TensorProto.UINT8: model_config_pb2.TYPE_UINT8,
    onnx.TensorProto.INT64: model_config_pb2.TYPE_INT64,
}


@dataclass(frozen=True)
class GraphTensor:
    name: str
    data_type: int  # a model_config_pb2.DataType value
    dims: tuple[int, ...]  # per sample: the graph's dims after its dynamic batch dimension


def graph_tensors(model_path: Path) -> tuple[list[GraphTensor], list[GraphTensor]]:
    """The graph's inputs and outputs, each with a dynamic first (batch) dimension and fixed others."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [_tensor(v, model_path) for v in graph.input], [_tensor(v, model_path) for v in graph.output]


def _tensor(value: onnx.ValueInfoProto, source: Path) -> GraphTensor:
    tensor_type = value.type.tensor_type
    dims = list(tensor_type.shape.dim)
    if not dims or dims[0].HasField("dim_value") or not all(d.HasField("dim_value") for d in dims[1:]):
        raise PipelineError(f"{source}: {value.name} needs a dynamic batch dimension and fixed others for Triton's max_batch_size")
    if tensor_type.elem_type not in TRITON_TYPES:
        raise PipelineError(f"{source}: {value.name} has ONNX element type {tensor_type.elem_type}, which has no Triton type here")
    return GraphTensor(value.name, TRITON_TYPES[tensor_type.elem_type], tuple(d.dim_value for d in dims[1:]))


def model_config(name: str, model_path: Path, policy: BatchPolicy, cpu_instances: int) -> model_config_pb2.ModelConfig:
    """Triton's config for the ONNX model at `model_path`: dynamic batching on CPU instances, with the
    limits mlp-serve uses (batches up to policy.max_batch rows, the same delay and queue bound)."""
    inputs, outputs = graph_tensors(model_path)
    config = model_config_pb2.ModelConfig(
        name=name,
        platform="onnxruntime_onnx",
        max_batch_size=policy.max_batch,  # so `dims` below leave the batch dimension out
        dynamic_batching=model_config_pb2.ModelDynamicBatching(
            max_queue_delay_microseconds=policy.max_queue_delay_us,
            default_queue_policy=model_config_pb2.ModelQueuePolicy(max_queue_size=policy.max_queue_size)),
        instance_group=[model_config_pb2.ModelInstanceGroup(kind=model_config_pb2.ModelInstanceGroup.KIND_CPU, count=cpu_instances)],
    )
    for tensor in inputs:
        config.input.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
    for tensor in outputs:
        config.output.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims, label_filename=LABELS_FILE)
    return config


def write_repository(root: Path, name: str, model_path: Path, classes: tuple[str, ...], config: model_config_pb2.ModelConfig) -> list[Path]:
    """Write the model's folder under `root` (the repository); returns the files written."""
    folder = Path(root) / name
    files = {folder / "config.pbtxt": text_format.MessageToString(config), folder / LABELS_FILE: "\n".join(classes) + "\n"}
    for path, text in files.items():
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    model_copy = folder / VERSION / "model.onnx"
    model_copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_path, model_copy)
    return [*files, model_copy]


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    """Parse a config.pbtxt with Triton's schema; an unknown field or bad value is a PipelineError."""
    try:
        return text_format.Parse(Path(path).read_text(), model_config_pb2.ModelConfig())
    except (OSError, text_format.ParseError) as err:
        raise PipelineError(f"{path}: not a valid Triton model config ({err})") from err


def kserve_manifest(name: str, storage_uri: str) -> str:
    """A KServe InferenceService serving the Triton repository at `storage_uri` with the Triton runtime."""
    service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name.replace("_", "-")},  # Kubernetes names: lowercase DNS labels, no "_"
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "triton"},
                    "protocolVersion": "v2",
                    "storageUri": storage_uri,  # the folder holding <name>/config.pbtxt: upload triton/ there
                    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
                }
            }
        },
    }
    header = f"# KServe InferenceService for the Triton repository in triton/ (model {name}).\n" \
             "# Upload triton/ to object storage and set storageUri to it, then: kubectl apply -f this file\n"
    return header + yaml.safe_dump(service, sort_keys=False)
