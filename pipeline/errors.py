"""The one exception type the pipeline raises for problems a user can fix (bad file, bad flag)."""


class PipelineError(Exception):
    """A one-line, user-facing error; entry points print it and exit non-zero."""
