"""MODEL_CARD.md for a bundle, in the usual model-card sections (Mitchell et al., "Model Cards
for Model Reporting"; Hugging Face's template), filled from the stage records, never retyped:
train_metrics.json (data, recipe, held-out metrics), the export manifest (versions, hardware,
parity verdict), parity.json (errors, argmax agreement), the model's contract, the bundle's variants
with their gate numbers and tuned ONNX Runtime options (deploy.build.serving), and the inference rows
of bench/results.json when a bench run exists.
"""

from __future__ import annotations

from typing import Any

from handoff.contract import Contract, InputFormat
from handoff.ort_options import describe
from handoff.reports import ParityReport, TrainReport

# What each dataset's model is for, in words a card reader needs; a new dataset adds an entry.
USE = {
    "mnist": {
        "intended": "Classifying 28 x 28 grayscale images of single handwritten digits (0-9), centred and "
        "size-normalised as in MNIST: white digit on a black background. A reference model for the "
        "pipeline's train -> export -> verify -> deploy path, and a teaching example.",
        "out_of_scope": "Photos or scans that are not cropped to one centred digit; letters, multi-digit "
        "numbers, other scripts; any decision with consequences for a person (cheques, forms) without "
        "human review. The model always answers one of the ten digits, even for inputs that are not digits.",
        "preprocessing": "Grayscale, 28 x 28, pixel / 255 into [0, 1] (torchvision's ToTensor), white digit on "
        "black. `mlp-predict` does this for image files (`--invert` for dark-on-light images); clients of the "
        "server or Triton send the float32 tensor themselves. Standardisation is inside the model.",
        "limitations": "Trained on MNIST only: accuracy drops on digits drawn, centred or scaled differently "
        "(e.g. a digit filling the whole frame). Probabilities are not calibrated for inputs unlike MNIST.",
    },
    "otto": {
        "intended": "Assigning a product of the Otto Group catalogue to one of nine categories from its 93 "
        "anonymised count features, as in Kaggle's Otto Group Product Classification Challenge.",
        "out_of_scope": "Products described by other features or feature orders; any catalogue other than the "
        "one the counts come from. The model always answers one of the nine classes.",
        "preprocessing": "Pass the raw non-negative counts in the column order feat_1..feat_93 (`mlp-predict` "
        "reads CSV files with those columns). log1p and per-feature standardisation are inside the model.",
        "limitations": "Features are anonymised counts; their meaning is unknown, so failure modes cannot be "
        "described in product terms. Validation metrics come from a seeded stratified split of the training "
        "file, which also chose the kept epoch, so they are slightly optimistic.",
    },
}
GENERIC_USE = {
    "intended": "Classification of inputs matching the contract below.",
    "out_of_scope": "Inputs outside the contract's shape or range.",
    "preprocessing": "See the input contract.",
    "limitations": "Evaluated only on the held-out split named below.",
}


def render(contract: Contract, train: TrainReport, export_manifest: dict[str, Any], parity: ParityReport,
           bench: dict[str, Any] | None, files: dict[str, str], deploy_config: dict[str, Any],
           serving: dict[str, Any]) -> str:
    use = USE.get(contract.dataset, GENERIC_USE)
    sections = [
        [f"# Model card: {contract.model_name} (version {contract.version})", ""],
        _details(contract, train, export_manifest, files),
        ["## Intended use", "", use["intended"], "", "## Out-of-scope use", "", use["out_of_scope"], ""],
        _training(train),
        _evaluation(train, parity),
        _variants(serving),
        _contract(contract, use["preprocessing"], deploy_config),
        ["## Limitations", "", use["limitations"], "", *_smoothing_note(train, len(contract.classes)), _precision_note(train), ""],
        _versions(train, export_manifest),
        _benchmarks(bench),
        _getting_started(contract),
    ]
    return "\n".join(line for section in sections for line in section)


def _details(contract: Contract, train: TrainReport, manifest: dict, files: dict[str, str]) -> list[str]:
    recipe = train.recipe
    widths = " -> ".join(str(w) for w in (contract.sample_size, *recipe["hidden"], len(contract.classes)))
    return [
        "## Model details", "",
        f"- Architecture: MLP {widths}, ReLU, softmax head; dataset `{contract.dataset}`.",
        f"- Trained with PyTorch {train.versions['torch']} (recipe `{recipe['name']}`); exported with "
        f"torch.onnx (dynamo), ONNX opset {manifest['config']['export']['onnx_opset']}, model version {contract.version}.",
        *(f"- `{name}` sha256 `{digest}`." for name, digest in files.items()),
        "- Every bundle file is listed in `manifest.json` with its sha256.",
        "",
    ]


def _training(train: TrainReport) -> list[str]:
    recipe = train.recipe
    data_line = ", ".join(f"{key} {value}" for key, value in train.data.items())
    return [
        "## Training data and procedure", "",
        f"- Data: {data_line}.",
        f"- Recipe `{recipe['name']}`: {recipe['optimizer']} lr {recipe['lr']} ({recipe['schedule']}), batch "
        f"{recipe['batch_size']}, {train.epochs:g} epochs, label smoothing {recipe.get('label_smoothing', 0)}, "
        f"dropout {recipe['dropout']}, weight decay {recipe['weight_decay']}, seed {train.seed}.",
        f"- Trained on {train.device} in {train.precision['dtype']} ({train.precision['reason']}); "
        f"{train.train_seconds:.1f} s on {train.cpu}.",
        "",
    ]


def _evaluation(train: TrainReport, parity: ParityReport) -> list[str]:
    metric_lines = [f"- {key}: {value:.4f}" for key, value in sorted(train.metrics.items())]
    lines = ["## Evaluation data and metrics", "", f"Held-out split `{train.held_out}` ({parity.labelled_set}):",
             *metric_lines, ""]
    lines += [f"Parity gate (`make export`): **{'passed' if parity.passed else 'failed'}**, reference "
              f"`{parity.reference}`, tolerances abs {parity.abs_tolerance:g} / rel {parity.rel_tolerance:g}, "
              f"inputs {parity.inputs}, batch sizes {parity.batch_sizes}.", "",
              "| runtime | max abs error | max rel error | argmax agreement (every batch size) |", "|---|---:|---:|---:|"]
    for pair in parity.pairs:
        lines.append(f"| {pair.candidate} | {pair.max_abs:.2e} | {pair.max_rel:.2e} | {pair.agreeing:,} / {pair.rows:,} |")
    return lines + [""]


def _variants(serving: dict) -> list[str]:
    default = serving["default_variant"]
    cpu = serving["ort_tuning_cpu"]
    gated = ("Every other variant was held to its gate against fp32 on the held-out split (`variants.json`, "
             "`make export`); its numbers are the worst over the gate's batch sizes.") if len(serving["variants"]) > 1 else ""
    lines = ["## Variants", "",
             f"The default is **{default}** (`{serving['variants'][default]['file']}`): `mlp-predict` and `mlp-serve` "
             "run it unless given `--variant`, and Triton's `1/model.onnx` is this file. `model.onnx` (fp32) is always "
             f"in the bundle as the reference. {gated}".rstrip(), "",
             "| variant | file | method | held-out accuracy | agreement with fp32 | max probability error | tolerance |",
             "|---|---|---|---:|---:|---:|---|"]
    for name, v in serving["variants"].items():
        accuracy = "n/a" if v["accuracy"] is None else f"{100 * v['accuracy']:.2f}%"
        compared = ("reference", "reference") if v["tolerance"] is None else (f"{100 * v['agreement']:.2f}%", f"{v['max_abs']:.1e}")
        lines.append(f"| {name} | `{v['file']}` | `{v['method']}` | {accuracy} | {compared[0]} | {compared[1]} | {_tolerance(v['tolerance'])} |")
    lines += ["", f"ONNX Runtime session options, chosen by measurement (`make tune`) on {cpu['model']} ({cpu['cores']} "
              "logical CPUs); a call runs with those tuned for the nearest batch size:", ""]
    for name in serving["variants"]:
        tuned = serving["ort_options"].get(name)
        choice = "; ".join(f"batch {size}: {describe(record)}" for size, record in sorted(tuned.items(), key=lambda kv: int(kv[0]))) \
            if tuned else "not tuned, ORT defaults"
        lines.append(f"- {name}: {choice}")
    return lines + [""]


def _tolerance(tolerance: dict | None) -> str:
    if tolerance is None:
        return "reference"
    text = f"accuracy drop <= {tolerance['max_accuracy_drop_points']:g} points, agreement >= {100 * tolerance['min_agreement']:g}%"
    return text + (f", max error <= {tolerance['max_abs']:g}" if tolerance.get("max_abs") is not None else "")


def _contract(contract: Contract, preprocessing: str, deploy_config: dict) -> list[str]:
    dims = " x ".join(map(str, contract.input_shape))
    return [
        "## Input and output contract", "",
        f"- Input `{contract.input_name}`: float32, N x {dims}, values in {contract.range_text()}; N is dynamic "
        f"(the server and Triton accept up to {deploy_config['max_batch']} rows per request). Both batch requests "
        f"dynamically: a batch waits at most {deploy_config.get('max_queue_delay_us', 0)} µs for more rows, and beyond "
        f"{deploy_config.get('max_queue_size', 'the')} queued requests a new one is refused (503 / UNAVAILABLE).",
        f"- Output `{contract.output_name}`: float32, N x {len(contract.classes)} softmax probabilities, rows sum to 1, "
        f"classes in this order: {', '.join(contract.classes)}.",
        f"- Preprocessing callers must do: {preprocessing}",
        "",
    ]


def _smoothing_note(train: TrainReport, classes: int) -> list[str]:
    """Why a clean input's top probability stops short of 1 under label smoothing."""
    epsilon = train.recipe.get("label_smoothing", 0)
    if not epsilon:
        return []
    ceiling = 1 - epsilon + epsilon / classes
    return [f"Trained with label smoothing {epsilon:g}: the loss is lowest when the true class gets "
            f"1 - {epsilon:g} + {epsilon:g}/{classes} = {ceiling:.2f} and every other class {epsilon / classes:.2f}, so even a "
            f"clean, unambiguous input gets a top probability near {ceiling:.2f}, not 1. The argmax is unaffected; "
            "read the probabilities as a ranking, not as calibrated confidences.", ""]


def _precision_note(train: TrainReport) -> str:
    return (f"The weights were trained in {train.precision['dtype']} autocast with float32 master weights; the "
            "artifact computes in float32.")


def _versions(train: TrainReport, manifest: dict) -> list[str]:
    versions = {**train.versions, **manifest["versions"]}
    return ["## Versions", "", ", ".join(f"{name} {version}" for name, version in sorted(versions.items())),
            "", "Serving needs only `requirements.txt` (no torch).", ""]


def _benchmarks(bench: dict | None) -> list[str]:
    lines = ["## Benchmark headline", ""]
    if bench is None:
        return lines + ["No `make bench` run existed when this bundle was built, and a later one does not rebuild it: "
                        "to quote one, run `make bench`, remove this folder, then `make deploy`.", ""]
    rows = [b["extra_info"] for b in bench["benchmarks"] if b["extra_info"].get("kind") == "inference"
            and b["extra_info"]["backend"].startswith("ort")]
    machine = bench["machine_info"]
    lines += [f"ONNX Runtime inference of this model's softmax head, {bench['datetime'][:10]}, on {machine['cpu_model']} "
              f"({machine['cpu_cores']} cores); the full report is `bench/report.md` beside the artifacts.", "",
              "| runtime | batch | samples/s | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["backend"], r["batch_size"])):
        lines.append(f"| {r['backend']} | {r['batch_size']} | {r['samples_per_second']:,.0f} "
                     f"| {r['latency_ms']['p50']:.3f} | {r['latency_ms']['p99']:.3f} |")
    return lines + [""]


def _getting_started(contract: Contract) -> list[str]:
    example = "digits/ seven.png" if contract.input_format == InputFormat.GRAYSCALE_IMAGE else "products.csv"
    return [
        "## How to get started", "",
        "```bash",
        "pip install -r requirements.txt          # onnxruntime, numpy, Pillow, uvicorn, grpcio; no torch",
        "pip install --no-deps <this repository>  # the deploy package: mlp-predict, mlp-serve",
        f"mlp-predict --bundle . --top-k 3 {example}",
        "mlp-serve --bundle . --port 8000         # Open Inference Protocol (KServe V2): HTTP :8000, gRPC :8001",
        "docker run --rm -p8000:8000 -v $PWD/triton:/models nvcr.io/nvidia/tritonserver:<yy.mm>-py3 \\",
        "    tritonserver --model-repository=/models",
        "```", "",
        f"Clients (e.g. `tritonclient.http`) send `{contract.input_name}` as FP32 and read `{contract.output_name}` "
        f"from model `{contract.model_name}`, the same against `mlp-serve`, Triton or KServe (`kserve/`).",
        "",
    ]
