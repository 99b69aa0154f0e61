"""The shared shape of every entry point: parse a config, run, turn PipelineError into exit 2."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

from pipeline.config import build_parser, config_from_args
from pipeline.errors import PipelineError


def run_cli(config_cls: type, body: Callable[[Any], None], doc: str, argv: list[str] | None) -> int:
    """Parse `argv` into `config_cls`, call `body(config)`; a PipelineError is one line on stderr."""
    parser = build_parser(config_cls, description=doc.strip().splitlines()[0])
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM unwinds like Ctrl-C: temp files removed
    try:
        body(config_from_args(config_cls, parser.parse_args(argv)))
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
