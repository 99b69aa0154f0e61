"""The one exception type the pipeline raises for problems a user can fix (bad file, bad flag)."""


class PipelineError(Exception):
    """A one-line, user-facing error; entry points print it and exit non-zero."""


def first_line(err: BaseException) -> str:
    """`Type: first line of the message`, for one-line reports of a library's exception."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
