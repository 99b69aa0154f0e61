"""The predictor's exit codes and the error that carries one; torch-free, shared by deploy/."""

from __future__ import annotations

from enum import IntEnum

from handoff.contract import ContractError
from handoff.errors import PipelineError


class ExitCode(IntEnum):
    """The predictor's exit codes, one per kind of problem (listed in `mlp-predict --help`)."""

    OK = 0
    USAGE = 2  # bad command line
    MISSING_INPUT = 3  # an input file or folder does not exist, or a folder holds no images
    NOT_READABLE = 4  # not an image, .npy or IDX file (or one that cannot be decoded)
    BAD_SHAPE = 5  # wrong shape or dtype for the model
    BAD_VALUES = 6  # NaN, infinity or values outside the model's input range
    BAD_CSV = 7  # a CSV without the training columns, or with a malformed row
    BAD_MODEL = 8  # the bundle is missing, tampered with, or not loadable


CONTRACT_EXIT = {"model": ExitCode.BAD_MODEL, "shape": ExitCode.BAD_SHAPE, "values": ExitCode.BAD_VALUES}


class DeployError(PipelineError):
    """A one-line, user-facing problem with a bundle or an input, and the exit code it maps to."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code

    @classmethod
    def of(cls, err: ContractError, prefix: str = "") -> DeployError:
        """A contract violation as the predictor reports it (its kind picks the exit code)."""
        return cls(f"{prefix}{err}", CONTRACT_EXIT[err.problem])
