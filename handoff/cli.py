"""The shape of every entry point: a frozen dataclass is the config, each field one `--flag`
(and one Make variable of the same name); run the body; a PipelineError is one line and exit 2.
`--check-flags` only builds the config (its __post_init__ validates the flags) and exits: the
Makefile asks it before it makes a stage's first file."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from handoff.errors import PipelineError


def run_cli(config_cls: type, body: Callable[[Any], None], doc: str, argv: list[str] | None) -> int:
    """Parse `argv` into `config_cls`, call `body(config)`; a PipelineError is one line on stderr."""
    parser = build_parser(config_cls, description=doc.strip().splitlines()[0])
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM unwinds like Ctrl-C: temp files removed
    try:
        args = parser.parse_args(argv)
        config = config_from_args(config_cls, args)
        if not args.check_flags:
            body(config)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; finished work is kept, re-run the same command to continue", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


_PARSERS = {"int | None": int, "int": int, "float": float, "float | None": float, "str": str, "str | None": str}


def build_parser(cls: type, description: str) -> argparse.ArgumentParser:
    """One `--flag` per dataclass field; a field's metadata may name an environment variable
    that supplies its default. `None` defaults mean 'not given'."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check-flags", action="store_true", help="check the flags, then exit; writes nothing")
    for f in dataclasses.fields(cls):
        env = f.metadata.get("env")
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=_PARSERS[str(f.type)],
            default=(env and os.environ.get(env)) or f.default,
            help=f.metadata.get("help"),
        )
    return parser


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
