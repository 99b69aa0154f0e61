"""mlp-predict: classify files with a deploy bundle's ONNX model, torch-free.

Usage:
    mlp-predict [--bundle DIR] [--variant NAME] [--top-k K] [--json] [--invert] [--verbose] INPUT...
    mlp-predict digits/ seven.png batch.npy t10k-images-idx3-ubyte.gz      # an MNIST bundle
    mlp-predict --bundle artifacts/otto/deploy --json products.csv          # an Otto bundle
    mlp-predict --variant fp32 digits/                                      # the fp32 reference

The bundle (default artifacts/deploy, from `make deploy`) is checked file by file against its
manifest before anything runs; its default variant runs unless --variant names another it holds,
with the ONNX Runtime options `make tune` chose for the batch size. Prints the top-k classes per
input, or with --json a list with one object per input: {"file", "index" (row in a multi-sample
file), "id" (Otto), "class", "probs" (class -> probability), "top_k"}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from deploy.bundle import load_bundle
from deploy.errors import DeployError, ExitCode
from deploy.predict.inputs import Inputs, read_inputs
from handoff.contract import InputFormat

EXIT_PIPE_CLOSED = 128 + 13  # what a shell reports for a process ended by SIGPIPE
CHUNK_ROWS = 4096  # rows per ONNX Runtime call: bounds peak memory on large IDX or CSV files

EPILOG = """inputs by bundle:
  MNIST (grayscale-image): PNG/JPEG/... files or folders of them (converted to grayscale, resized
      to 28x28); .npy arrays N x 28 x 28 or N x 1 x 28 x 28 (uint8 0-255 or float 0-1); IDX files
      (plain or .gz). MNIST digits are white on black: pass --invert for dark digits on a light
      background (scans, photos of paper, most drawing programs).
  Otto (otto-csv): CSV files with columns feat_1..feat_93; `id` optional, no `target` needed.

exit codes:
  0  success
  2  bad command line
  3  an input file or folder is missing (or a folder holds no images)
  4  an input is not an image, .npy or IDX file
  5  an input has the wrong shape or dtype
  6  an input holds NaN, infinity or values outside the model's range
  7  a CSV lacks the training columns or has a malformed row
  8  the bundle is missing, tampered with (sha256 differs from manifest.json) or unloadable,
     or holds no such --variant
  141  the reader of the output went away early (e.g. `| head`), as for a filter ended by SIGPIPE
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mlp-predict", description=__doc__.strip().splitlines()[0],
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders to classify")
    parser.add_argument("--bundle", default="artifacts/deploy", help="deploy bundle folder (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=3, help="classes to show per input (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per input")
    parser.add_argument("--invert", action="store_true", help="flip image intensities (x -> 1 - x): dark digits on light")
    parser.add_argument("--variant", default=None,
                        help="model variant in the bundle, e.g. fp32 or int8 (default: the bundle's default_variant)")
    parser.add_argument("--verbose", action="store_true", help="print the variant and ONNX Runtime options used to stderr")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    return args


def predict(bundle, inputs: Inputs) -> np.ndarray:
    """Probabilities, N x classes, computed CHUNK_ROWS rows at a time."""
    return np.concatenate([bundle.predict(inputs.array[i : i + CHUNK_ROWS]) for i in range(0, len(inputs.array), CHUNK_ROWS)])


def results(inputs: Inputs, probs: np.ndarray, classes: tuple[str, ...], top_k: int) -> list[dict]:
    rows = []
    for source, row in zip(inputs.sources, probs, strict=True):
        order = np.argsort(-row, kind="stable")[: min(top_k, len(classes))]
        entry = {"file": source.file}
        if source.index is not None:
            entry["index"] = source.index
        if source.id is not None:
            entry["id"] = source.id
        entry |= {
            "class": classes[order[0]],
            "probs": {name: float(p) for name, p in zip(classes, row, strict=True)},
            "top_k": [{"class": classes[i], "prob": float(row[i])} for i in order],
        }
        rows.append(entry)
    return rows


def run(args: argparse.Namespace) -> None:
    bundle = load_bundle(args.bundle, args.variant)
    if args.verbose:  # stderr: stdout stays the predictions alone, for pipes and --json
        print(bundle.summary(), file=sys.stderr)
    if args.invert and bundle.contract.input_format != InputFormat.GRAYSCALE_IMAGE:
        raise DeployError(f"--invert applies to image bundles; {args.bundle} takes {bundle.contract.input_format}", ExitCode.USAGE)
    inputs = read_inputs(args.inputs, bundle.contract, args.invert)
    rows = results(inputs, predict(bundle, inputs), bundle.contract.classes, args.top_k)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for source, row in zip(inputs.sources, rows, strict=True):
        print(f"{source.label()}: " + ", ".join(f"{t['class']} {t['prob']:.4f}" for t in row["top_k"]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
        sys.stdout.flush()  # here, so a closed pipe raises inside the try, not at the interpreter's exit
    except DeployError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(err.code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `mlp-predict FILE | head`: the reader has all it wanted. Quiet, as a Unix filter is
        # (Python's documented recipe: stdout to /dev/null, so the final flush cannot raise again).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE_CLOSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
