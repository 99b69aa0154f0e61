"""`model.pt`: the trained MLP's state_dict with everything needed to rebuild and judge it.

The file holds only tensors and plain containers, so it loads with `torch.load(weights_only=True)`:
    {"format", "state_dict", "architecture", "dataset", "input_shape", "input_name", "input_contract",
     "classes", "config", "metrics", "versions"}
`architecture` holds the `MLP(...)` arguments, so `load_checkpoint` rebuilds the network.
The weights take the dataset's raw input (MNIST: ToTensor-scale [0, 1] floats; Otto: counts): any
input transform and normalisation the recipe trained with is part of the saved model.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from handoff.atomic import atomic_path
from handoff.errors import PipelineError, first_line
from pipeline.model import MLP, linear_layers

FORMAT = "mnist-pipeline/model-v1"


def save_checkpoint(path: Path, model: MLP, **fields: Any) -> None:
    """Write the model and its metadata atomically; `fields` must be plain Python data."""
    payload = {"format": FORMAT, "state_dict": model.state_dict(), "architecture": architecture_of(model), **fields}
    with atomic_path(Path(path)) as tmp:
        torch.save(payload, tmp)


def architecture_of(model: MLP) -> dict[str, Any]:
    """The MLP constructor arguments that rebuild `model`."""
    return {
        "in_features": linear_layers(model)[0].in_features,
        "hidden": [layer.out_features for layer in model.hidden],
        "num_classes": model.out.out_features,
        "input_transform": model.input_transform,
        "dropout": model.dropout.p if isinstance(model.dropout, torch.nn.Dropout) else 0.0,
    }


def load_plain(path: Path) -> Any:
    """torch.load with weights_only=True (tensors and plain containers only, so loading a file
    cannot run code), every failure turned into a one-line PipelineError naming the file."""
    if not Path(path).exists():
        raise PipelineError(f"{path}: not found; run `make train` first")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its index sits at the end
        raise PipelineError(f"{path}: not a torch.save archive (truncated, or another kind of file)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refused something that is not plain data
        refused = re.search(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)", str(err))
        what = f"it asks for {refused.group(1)}" if refused else first_line(err)
        raise PipelineError(f"{path}: refused by weights_only loading ({what}); not a plain-data checkpoint") from err
    except Exception as err:  # torch.load raises many types for a corrupt file; all mean "unusable"
        raise PipelineError(f"{path}: not a loadable checkpoint ({first_line(err)})") from err
    return payload


def load_checkpoint(path: Path) -> tuple[MLP, dict[str, Any]]:
    """Rebuild the MLP from `path`; returns (model in eval mode, the whole payload)."""
    payload = load_plain(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PipelineError(f"{path}: not a {FORMAT} checkpoint")
    try:
        model = MLP(**payload["architecture"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as err:
        reason = str(err).splitlines()[0]
        raise PipelineError(f"{path}: weights do not fit {payload.get('architecture')} ({reason})") from err
    return model.eval(), payload
