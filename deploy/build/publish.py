"""Publish a deploy bundle into a model repository as the model's next version, torch-free.

Usage:
    python -m deploy.build.publish --bundle artifacts/deploy --repository models [--model NAME]
    make deploy REPOSITORY=models                # builds the bundle, then publishes it

The bundle is verified, copied to <repository>/<model>/.publish-*, verified again and renamed to
<repository>/<model>/<N+1>/ (deploy.model_repository.publish), so a server re-reading the folder
never sees half a version. Publishing the bundle the latest version already holds adds nothing.
The model name is the bundle's (its contract's, e.g. mnist_mlp) unless --model gives one. A
running `mlp-serve --repository models` serves the new version after a load: `curl -X POST
http://127.0.0.1:8000/v2/repository/models/mnist_mlp/load`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from deploy.bundle import load_bundle
from deploy.model_repository import publish
from handoff.cli import run_cli


@dataclass(frozen=True)
class PublishConfig:
    bundle: str = field(default="artifacts/deploy", metadata={"help": "the deploy bundle to publish"})
    repository: str = field(default="models", metadata={"help": "the model repository folder (made if missing)"})
    model: str | None = field(default=None, metadata={"help": "the model's folder name (default: the bundle's model name)"})


def run(config: PublishConfig) -> None:
    bundle = Path(config.bundle)
    name = config.model or load_bundle(bundle).contract.model_name
    version, added = publish(bundle, Path(config.repository), name)
    where = Path(config.repository) / name / version
    print(f"{where}: published {bundle} as {name} version {version}" if added
          else f"{where}: already holds this bundle; nothing published")


def main(argv: list[str] | None = None) -> int:
    return run_cli(PublishConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
